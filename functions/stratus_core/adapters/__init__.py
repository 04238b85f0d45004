"""The adapters: the only code that knows boto3, table layouts, object keys and `ClientError` codes.

`aws.py` makes the clients (standard retries, bounded timeouts); `dynamo/` holds one store per
table and the transaction helper every multi-item write goes through; `s3_objects.py`,
`s3_invoices.py`, `sqs.py` and `sagemaker.py` are the other services. Each turns the service's
errors into domain results or exceptions (`NotFound`, `Conflict`, `False` for a lost race), so the
domain above never sees a `ClientError` it has to decode.
"""
