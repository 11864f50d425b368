"""The commands, one short module each: ``add_parser(subparsers)`` and ``main(args) -> status``."""
