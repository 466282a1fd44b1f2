"""``flask --app wsgi users ...``: create users, reset passwords, list them."""

import click
from flask import current_app
from flask.cli import AppGroup

from accounts import AccountError

users_cli = AppGroup("users", help="Manage the accounts that may sign in.")


def _accounts():
    return current_app.extensions["accounts"]


@users_cli.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="May open the Jobs page and use its controls.")
@click.option("--password", help="The password (asked for when not given).")
def create(name, admin, password):
    """Create the user NAME."""
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        _accounts().create_user(name, password, admin=admin)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Created {'administrator' if admin else 'user'} {name}.")


@users_cli.command("passwd")
@click.argument("name")
@click.option("--password", help="The new password (asked for when not given).")
def passwd(name, password):
    """Set a new password for NAME and sign out their sessions."""
    if password is None:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        _accounts().set_password(name, password)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Changed the password of {name}; their sessions have ended.")


@users_cli.command("list")
def list_users():
    """List every user and whether they are an administrator."""
    users = _accounts().users()
    if not users:
        click.echo("No users yet.")
    for name, admin, _created in users:
        click.echo(f"{name}\t{'admin' if admin else 'user'}")
