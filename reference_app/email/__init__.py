"""The email service: the transactional mails the events call for (no public routes)."""
