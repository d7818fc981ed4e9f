"""The reference app: commercekit assembled into an nginx-fronted microservice stack.

Services (each a FastAPI app built by ``create_app(settings)``):

- ``reference_app.user``: signup, login, refresh, logout, and the gateway's verify.
- ``reference_app.gateway``: the nginx configuration in front of them all.

``python -m reference_app.launch`` runs the stack as local processes.
"""
