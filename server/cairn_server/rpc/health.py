"""The standard gRPC health service, answering an unknown service's NOT_FOUND with a message (the library's
own sends none, and every error Cairn sends says what was wrong)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2

from ..errors import quoted


class Health(health.HealthServicer):
    def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext):  # noqa: N802 (gRPC's)
        response = super().Check(request, context)
        if context.code() == grpc.StatusCode.NOT_FOUND:
            context.set_details(f"no service named {quoted(request.service)} reports health here")
        return response
