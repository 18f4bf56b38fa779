"""The command line: `python -m evaluation_api.identity.accounts --help` (the package's __init__.py says more)."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from evaluation_api.audit import trail as audit
from evaluation_api.identity import passwords
from evaluation_api.identity.accounts import (
    AccountError,
    create_account,
    create_key,
    ensure_admin,
    list_accounts,
    reset_password,
    revoke_key,
    set_disabled,
)
from evaluation_api.identity.roles import ROLES

# --- the command line --------------------------------------------------------------------------------


def _read_password(stdin: Any) -> str:
    line: str = stdin.readline()
    return line.rstrip("\r\n")


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _cli_context() -> audit.Context:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return audit.Context(f"cli:{user}"[:128], "-", "-", None)


def main(argv: list[str] | None = None, *, stdin: Any = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation_api.identity.accounts", description="Local accounts and system keys."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create an account that signs in with a password")
    create.add_argument("name")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--password-stdin", action="store_true", required=True, help="read the password from stdin")
    key = commands.add_parser("create-key", help="create a key for a system account (printed once, last line)")
    key.add_argument("name")
    key.add_argument("--role", required=True, choices=ROLES)
    commands.add_parser("list", help="list the accounts")
    for name in ("disable", "enable"):
        commands.add_parser(name, help=f"{name} an account").add_argument("name")
    reset = commands.add_parser("reset-password", help="set a new password (lifts a lockout)")
    reset.add_argument("name")
    reset.add_argument("--password-stdin", action="store_true", required=True)
    revoke = commands.add_parser("revoke-key", help="revoke a key by its id")
    revoke.add_argument("key_id")
    bootstrap = commands.add_parser("ensure-admin", help="create `admin` with a random password if no admin exists")
    bootstrap.add_argument("--api-url", default="http://127.0.0.1:8000")
    args = parser.parse_args(argv)
    stdin = stdin if stdin is not None else sys.stdin

    from evaluation_api.config import get_settings
    from evaluation_api.database import make_engine
    from evaluation_api.migrate import upgrade

    engine = make_engine(get_settings().database_url)
    context = _cli_context()
    try:
        upgrade(engine)
        if args.command == "create":
            create_account(engine, context, args.name, args.role, _read_password(stdin))
            _say(f"Conta {args.name} criada com o papel {args.role}.")
        elif args.command == "create-key":
            key_id, secret = create_key(engine, context, args.name, args.role)
            _say(f"Chave {key_id} criada para {args.name} ({args.role}). Guarde-a agora: ela não é mostrada de novo.")
            _say(secret)
        elif args.command == "list":
            for info in list_accounts(engine):
                state = "desativada" if info.disabled else "ativa"
                _say(
                    f"{info.username}\t{info.role}\t{state}\tchaves={info.active_keys}\tcriada={info.created_at:%Y-%m-%d}"
                )
        elif args.command in ("disable", "enable"):
            set_disabled(engine, context, args.name, args.command == "disable")
            _say(f"Conta {args.name} {'desativada' if args.command == 'disable' else 'reativada'}.")
        elif args.command == "reset-password":
            reset_password(engine, context, args.name, _read_password(stdin))
            _say(f"Senha de {args.name} alterada.")
        elif args.command == "revoke-key":
            revoke_key(engine, context, args.key_id)
            _say(f"Chave {args.key_id} revogada.")
        elif args.command == "ensure-admin":
            password = ensure_admin(engine)
            if password is not None:
                _say(
                    "\n  Primeira execução: conta de administrador criada (a senha não é mostrada de novo).\n"
                    f"    Usuário: admin\n    Senha:   {password}\n"
                    f"  Entre em {args.api_url}/ ou peça um token:\n"
                    f"    curl -d username=admin -d 'password=...' {args.api_url}/api/v1/auth/token\n"
                    "  Crie as contas de quem vai usar o sistema:\n"
                    "    .venv/bin/python -m evaluation_api.identity.accounts create NOME --role analyst "
                    "--password-stdin\n"
                    "    .venv/bin/python -m evaluation_api.identity.accounts create-key NOME --role system\n"
                )
    except (AccountError, passwords.WeakPassword) as exc:
        sys.stderr.write(f"erro: {exc}\n")
        return 1
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
