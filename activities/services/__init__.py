"""Services the rules and the API share: documents (content, money, DOCX, PDF, the signature certificate), the
document store and its background PDF runner, and signing links with the messages they go out in."""
