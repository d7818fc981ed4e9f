"""The inventory service: products, stock and reservations, and the settlement of payments."""
