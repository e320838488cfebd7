"""YokeFlow Coordinator: the domain, storage and coordination service."""

__version__ = "0.1.0"
