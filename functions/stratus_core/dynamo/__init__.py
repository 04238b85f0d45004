"""DynamoDB adapters: the only code that knows table layouts and `ClientError` codes."""
