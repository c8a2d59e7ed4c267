"""gRPC servicers and the single table from Cairn errors to gRPC status."""
