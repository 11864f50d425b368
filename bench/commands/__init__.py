"""The commands, one short module each: ``add_parser(subparsers)`` and ``main(args) -> status``."""


def add_matmul_option(parser) -> None:
  """``--matmul``: the products' format of certified verification (``ja.verify``'s ``matmul``)."""
  parser.add_argument(
    "--matmul",
    choices=("float32", "bfloat16"),
    default="float32",
    help="products of the certified pass: float32 (default) or bfloat16 "
    "(accumulated in float32); the verdict is exact either way",
  )
