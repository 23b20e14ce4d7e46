# /etc/jupyter/jupyter_notebook_config.py of hubgate/jupyter-debian
# (Notebook 6).
#
# hubgate sends the container secret (Authorization: token ...) on every
# request it proxies, so to Notebook every request is "token-authenticated",
# and Notebook skips its Origin check (and its XSRF check) for those. The
# Origin check is what stops another site from opening a kernel's websocket
# or calling the API with the user's session. Keep it on for every request:
# the gateway keeps the Host header, so the app's own pages (Origin
# https://host:port equal to Host) pass and a foreign Origin gets 403/404.
from notebook.auth.login import LoginHandler


class HubgateLoginHandler(LoginHandler):
    @classmethod
    def should_check_origin(cls, handler):
        return True


c.NotebookApp.login_handler_class = HubgateLoginHandler  # noqa: F821 (c is Jupyter's config)
