"""OpenAI's Batch API: a JSONL file of requests becomes jobs on the batch lane, then output files.

Lifecycle: `validating` → (`failed` when lines are invalid) → `in_progress` → `finalizing` →
`completed` | `expired`; `cancelling` → `cancelled` at any point before the end. A batch's lines
are cut into chunks of up to `MaxPackSize` lines of one model, and each chunk is one job, one
reservation and one pack (`chunks.py`), whose id is the batch id plus the chunk's ordinal and
size, so redelivered work finds what was already done. Batch requests count against the monthly
token quota (reserved when the batch starts, settled per chunk) but not against per-minute limits
or in-flight slots: they run at the platform's pace on their own queue, behind interactive
traffic. Batches started before chunks keep one job per line to the end.

- `models.py`: the API's batch objects and the batch queue's message;
- `jsonl.py`: an input file's lines, validated as OpenAI does;
- `chunks.py`: the lines cut into chunks, their ids and their stored body;
- `service.py`: the API side (create, read, list, cancel);
- `progress.py`: "was that the batch's last request?" (settlement asks it after every job);
- `worker.py`: the batch function's side (start, cancel the jobs, finalize);
- `output.py`: the output and error files' lines.
"""
