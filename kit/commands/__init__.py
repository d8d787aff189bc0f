"""One module per `kit` subcommand: `add_arguments(parser)` and `run(args) -> int`."""
