"""Decision log: records masked at source into a crash-safe local buffer, shipped to the
control plane until acknowledged.

| module | what |
|---|---|
| `records` | masking, the NDJSON line, the ingest body (gzip) |
| `segments` | the files on disk: segments, `ack.json`, recovery helpers |
| `buffer` | `DecisionBuffer`: append, fsync, back-pressure, recovery, acknowledgement |
| `shipper` | `Shipper`: batches posted in order (two in flight), back-off, 413/422 handling |

Directory layout: `<20-digit index>.ndjson` segments (a new one at every start and every
`segment_bytes`), `ack.json` = `{"segment": index, "offset": bytes}`, `.lock`, and
`rejected.ndjson` for records the control plane refused as invalid.
"""

from authz_sidecar.decision_log.buffer import REJECTED, DecisionBuffer, DecisionBufferBusy
from authz_sidecar.decision_log.records import MASK
from authz_sidecar.decision_log.segments import ACK
from authz_sidecar.decision_log.shipper import Shipper

__all__ = ["ACK", "MASK", "REJECTED", "DecisionBuffer", "DecisionBufferBusy", "Shipper"]
