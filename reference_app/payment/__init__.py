"""The payment service: charges reservations, reports payments, completes refunds."""
