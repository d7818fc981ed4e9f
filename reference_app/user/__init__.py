"""The user service: signup, login, refresh, logout, and the gateway's verify."""
