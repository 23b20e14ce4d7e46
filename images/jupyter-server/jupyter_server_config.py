# /usr/local/etc/jupyter/jupyter_server_config.py of hubgate's production
# images (jupyter_server 2: JupyterLab, and RStudio behind
# jupyter-rsession-proxy). Loaded in addition to docker-stacks' own
# /etc/jupyter/jupyter_server_config.py.
#
# hubgate sends the container secret (Authorization: token ...) on every
# request it proxies, so to jupyter_server every request is
# "token-authenticated", and it skips its Origin check for those. That
# check is what stops another site (even a sibling subdomain, which
# SameSite cookies do not separate) from opening a kernel's or RStudio's
# websocket, or calling the API, with the user's session. Keep it on: the
# gateway keeps Host, so the app's own pages (Origin https://host equal to
# Host) pass, and a foreign Origin is refused.
from jupyter_server.auth.identity import PasswordIdentityProvider


class HubgateIdentityProvider(PasswordIdentityProvider):
    def should_check_origin(self, handler):
        return True


c.ServerApp.identity_provider_class = HubgateIdentityProvider  # noqa: F821 (c is Jupyter's config)
