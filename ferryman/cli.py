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
  ferryman reload -c ferryman.toml    make the running ferryman re-read it (or send it SIGHUP)

a minimal ferryman.toml, the classic Apache deployment in four tables:

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
check prints warnings about known traps as FILE:LINE: KEY: warning: ... and still exits 0.
exit status: 0 ok, 1 runtime failure (e.g. port in use), 2 invalid configuration or usage
"""


EXPLAIN_EXAMPLES = """\
examples:
  ferryman explain -c ferryman.toml 'GET /webapps/x'
  ferryman explain -c ferryman.toml 'GET /webapps/x' --cookie 'sessionid=abc.http-1'
  ferryman explain -c ferryman.toml 'GET /webapps/x' --cookie 'sessionid=abc.http-1' --down http-1

it prints the route matched, the mapped path, the sticky route and where it was read, the member
chosen and why (sticky, balanced, failover, hot standby, no usable member), running a live request's
own code: paths live traffic refuses are refused with the same status, and a member given with
--down is in error and refuses connections, so with every member down the report shows the tries
and the 503 a live request gets. Live requests carry the same answer in the ferryman-explain
response header when a listener sets explain_header = true.
exit status: 0 a member would serve it, 1 it would be refused or get 404/503, 2 bad usage/config
"""


RELOAD_EXAMPLES = """\
examples:
  ferryman reload -c ferryman.toml             re-read the configuration of the ferryman serving it
  ferryman reload -c ferryman.toml --timeout 60

what happens: the running ferryman re-reads FILE and every certificate, key, CA and htpasswd file it
names, and checks all of it before anything changes. A good configuration takes effect for new
requests (requests in flight finish as they started; kept listeners keep their sockets, so no
connection is refused; members keep their health state by pool and URL). A bad one is refused, with
each reason as FILE:LINE: KEY: ..., and the running configuration keeps serving.
the process is found through its pid file (the pid_file setting, or its default named after FILE's
absolute path). Sending SIGHUP to the process does the same without waiting for the result.
Certificates, keys and htpasswd files are also reloaded by themselves about a second after they change.
exit status: 0 reloaded, 1 no ferryman runs FILE (or no answer in time, or the reload failed part-way), 2 refused
(the reasons are printed)
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
                       ("check", "validate the configuration, print a summary, start nothing"),
                       ("explain", "say where a request would go and why, without sending it")):
        p = sub.add_parser(name, help=text, description=text,
                           epilog=EXPLAIN_EXAMPLES if name == "explain" else EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("-c", "--config", required=True, metavar="FILE", help="the TOML configuration file")
        if name == "explain":
            p.add_argument("request", metavar="'METHOD TARGET'", help="e.g. 'GET /webapps/x?y=1'")
            p.add_argument("--listener", metavar="NAME", help="the listener it arrives on (default: the first)")
            p.add_argument("--cookie", metavar="COOKIES", help="the Cookie header, e.g. 'sessionid=abc.http-1'")
            p.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                           help="another request header (repeatable)")
            p.add_argument("--client", default="127.0.0.1", metavar="IP", help="the client address")
            p.add_argument("--down", action="append", default=[], metavar="ROUTE|URL",
                           help="treat this member as down: in error, refusing connections if tried "
                                "(repeatable), to see the failover")
            p.add_argument("--in-error", action="append", default=[], metavar="ROUTE|URL",
                           help="treat this member as in error (resting after a failure) but answering if "
                                "tried (repeatable): with every member in error, force recovery serves")
    reload_text = "make the ferryman running a configuration re-read it, and say whether it took it"
    rp = sub.add_parser("reload", help=reload_text, description=reload_text, epilog=RELOAD_EXAMPLES,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    rp.add_argument("-c", "--config", required=True, metavar="FILE",
                    help="the TOML configuration file the running ferryman was started with")
    rp.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                    help="how long to wait for the outcome (default: 30)")
    demo_text = "start the classic deployment on this machine: ferryman on HTTP and HTTPS, two Django app servers"
    demo = sub.add_parser("demo", help=demo_text, description=demo_text + "; Ctrl-C stops everything.")
    from ferryman.demo.cli import add_arguments

    add_arguments(demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "demo":
        from ferryman.demo.runner import main as demo

        return demo(args)
    if args.command == "reload":
        from ferryman.reloadcmd import reload_command

        return reload_command(args.config, args.timeout)
    from ferryman.config.loader import load_config
    from ferryman.plan import compile_plan

    try:
        plan = compile_plan(load_config(args.config))
    except ConfigError as err:
        for issue in err.issues:
            print(issue, file=sys.stderr)
        print(f"ferryman: {len(err.issues)} problem(s) in {args.config}; nothing started", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"ferryman: cannot read {args.config}: {err.strerror}", file=sys.stderr)
        return 2
    if args.command == "explain":
        from ferryman.explain import Question, explain

        method, _, target = args.request.strip().partition(" ")
        if not target.strip().startswith("/"):
            print("ferryman explain: give the request as 'METHOD /path', e.g. 'GET /webapps/x'", file=sys.stderr)
            return 2
        headers = [tuple(h.split(":", 1)) for h in args.header if ":" in h]
        status, report = explain(plan, Question(
            method, target.strip(), args.listener, args.cookie,
            [(k.strip(), v.strip()) for k, v in headers], args.client, args.down, args.in_error))
        print(report, file=sys.stdout if status != 2 else sys.stderr)
        return status
    if args.command == "check":
        from ferryman.config.summary import summarize

        for warning in plan.warnings:
            print(warning, file=sys.stderr)
        print(summarize(plan.config))
        counted = f" with {len(plan.warnings)} warning(s)" if plan.warnings else ""
        print(f"{args.config}: configuration is valid{counted}")
        return 0
    from ferryman.server.master import run

    return run(plan, args.config)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
