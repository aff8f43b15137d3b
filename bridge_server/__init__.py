"""skbridge's server: owns core estimator instances by id behind a ZeroMQ socket."""

__version__ = "0.1.0"
