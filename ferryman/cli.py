"""The `ferryman` command: parse arguments, call the library, map errors to exit codes."""

from __future__ import annotations

import argparse
import sys

from ferryman import __version__
from ferryman.errors import ConfigError

EXAMPLES = """\
examples:
  ferryman check -c ferryman.toml     validate a configuration and print what it sets up
  ferryman run -c ferryman.toml       serve it (SIGTERM or Ctrl-C stops gracefully)

a minimal ferryman.toml, the Apache seed in four tables:

  [[listener]]
  name = "http"
  bind = "127.0.0.1:8080"

  [pool.django-http]
  sticky = "sessionid"
  members = [
    { url = "http://127.0.0.1:9001/webapps", route = "http-1" },
    { url = "http://127.0.0.1:9002/webapps", route = "http-2" },
  ]

  [[route]]
  path = "/webapps"
  pool = "django-http"

every key, its default and the Apache directive it replaces: docs/configuration.md
exit status: 0 ok, 1 runtime failure (e.g. port in use), 2 invalid configuration or usage
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ferryman",
        description="A reverse proxy and load balancer for Python web apps, with Apache "
                    "mod_proxy_balancer semantics (sticky sessions, member states, ProxyPassReverse).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ferryman {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in (("run", "serve the configuration until SIGTERM/SIGINT"),
                       ("check", "validate the configuration, print a summary, start nothing")):
        p = sub.add_parser(name, help=text, description=text, epilog=EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("-c", "--config", required=True, metavar="FILE", help="the TOML configuration file")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from ferryman.config.loader import load_config

    try:
        config = load_config(args.config)
    except ConfigError as err:
        for issue in err.issues:
            print(issue, file=sys.stderr)
        print(f"ferryman: {len(err.issues)} problem(s) in {args.config}; nothing started", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"ferryman: cannot read {args.config}: {err.strerror}", file=sys.stderr)
        return 2
    if args.command == "check":
        from ferryman.config.summary import summarize

        print(summarize(config))
        print(f"{args.config}: configuration is valid")
        return 0
    from ferryman.server.app import run

    return run(config)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
