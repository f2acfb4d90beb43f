"""A real OpenID Connect provider for the single sign-on tests: django-oauth-toolkit in its own small Django
project, run as a separate process (``OidcProvider`` in server.py) with an RSA key generated at start."""
