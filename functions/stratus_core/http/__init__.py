"""What the API function shares with any HTTP-facing code: errors in OpenAI's shape, the caller."""
