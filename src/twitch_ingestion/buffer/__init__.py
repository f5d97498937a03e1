"""The durable buffer between parsing and the Kafka producer: at-least-once from the socket.

Twitch chat cannot be replayed, so a record is written here *before* it is handed to the
producer and stays until Kafka acknowledges it. The service's loop is::

    appended = buffer.append_batch(records)             # seqs first_seq .. + accepted - 1
    for i, record in enumerate(records[: appended.accepted]):
        producer.produce(..., on_delivery=lambda err, msg, seq=appended.first_seq + i: ...)
    # delivery report without error -> buffer.ack(seq)
    # every few ms: buffer.maybe_sync(time.monotonic())

and at startup, before reading Twitch, it produces everything `replay()` yields.

`DiskBuffer` (BUFFER_MODE=disk) is a segment log like Vector's disk buffer or Filebeat's
disk queue; the format is described in `segment_log`. Its guarantees, each an invariant
of the model-based test (`tests/unit/test_buffer_model.py`, which drives this class
through random appends, acks, rewinds, crashes and full disks and checks them after
every step):

* **Process crash** (kill -9, OOM, exception), before or after fsync: every record
  `append_batch` accepted and wrote is replayed by the next `replay()`, in append order.
  `append_batch` returns only after one `os.write` of the whole batch, and the kernel's
  page cache outlives the process. Only records held in memory because the disk was full
  (below) are lost.
* **Power loss / kernel crash**: records appended in the last `BUFFER_FSYNC_MS` before the
  loss may be lost; older ones are on disk. This is group commit: `maybe_sync()` fsyncs the
  active segment at most every `fsync_ms`, so 50,000 records/s cost ~20 fsyncs/s, not
  50,000. `BUFFER_FSYNC_MS=0` fsyncs every batch before `append_batch` returns (no loss
  window, at the disk's fsync latency per batch). A segment is fsynced when it is rotated
  out, and the directory after a segment is created. The fsync runs on the calling
  (event loop) thread and takes as long as the disk needs to flush `fsync_ms` of data.
* **Duplicates, never loss**: acks are checkpointed (one `.acks` file per segment, a map of
  every acked record) at most every `checkpoint_interval_ms` and on `close()`. After a
  crash, records acked since the last checkpoint are replayed again; after a clean
  `close()` none is. Kafka consumers must tolerate duplicates anyway (the record's own id
  deduplicates). A sealed segment whose records are all acked is deleted by the next
  `append_batch` or `maybe_sync` (the active one when it is rotated out, or on
  `close()`), and a deleted segment is never replayed: once everything is acked, at most
  the active segment is left, and nothing after `close()`.
* **Rewind**: `unacked()` yields, in append order and each once, every record that was
  unacked when it began and is still unacked when it gets there, wherever the record
  is meanwhile (on disk, held in memory, or written back from memory to a new segment
  while it runs); never one acked before it began. Records appended while it runs may be
  yielded too, after the older ones.
* **Damage**: every frame carries its length and a CRC32. On `open()` a damaged or torn
  tail is cut off (logged, counted in
  `twitch_ingestion_buffer_records_dropped_total{reason="corrupt_tail"}`);
  damage in the middle of a segment is skipped by resynchronising on the next intact
  frame (counted as `reason="corrupt_frame"`, the lost records known from the seq gap),
  and the segment is rewritten without the damaged bytes, so either is counted once, not
  again at the next start (unless the disk had no room for the rewrite). Only the
  records in the damaged bytes are lost. The buffer never refuses to start because of
  damage, and `open()`/`replay()` never raise on it.
* **Disk full** (ENOSPC, EDQUOT): a write the disk refuses is taken back whole (no torn
  frame), and that batch and the ones after it are held in memory, with their seqs, and
  counted against `BUFFER_MAX_BYTES` exactly as the frames they will become (the full
  policy applies; a record too large for a frame is refused at append, as on disk);
  they count in `twitch_ingestion_buffer_records_held_in_memory_total` and
  `twitch_ingestion_buffer_disk_full` is 1, with one warning per
  episode. Every `DISK_RETRY_S` on the `maybe_sync` tick, and at once when acks free a
  segment, they are written back to disk, oldest first, as far as the disk and the cap
  take them, and appends go to disk again once none is held.
  Held records are acked, produced again by `unacked()` (after everything on disk, so
  append order holds) and bound by the cap like the rest, but a crash loses them, as it
  would a `MemoryBuffer`'s; `close()` writes back every one the disk takes (past the cap
  if it must, by the new segments' headers and topic definitions) and counts those it
  still cannot write as `reason="disk_full"` drops.
* **Order**: `replay()` and `unacked()` yield in append order, which is per-channel order.
  The caller must produce in that order; the idempotent producer keeps it per partition.
* **Capacity**: `BUFFER_MAX_BYTES` bounds the bytes of all segment files plus the frames of
  records held in memory (`bytes`); acked records count until their segment is deleted.
  Every append counts, besides its frames, what it may add: a new segment's header and
  the topic definitions. Space comes back a segment at a time, so a segment is at most a
  quarter of the cap. Policy `drop_newest` drops the records of a batch that do not fit
  (`reason="buffer_full"`); policy `block` accepts what fits and the caller awaits
  `wait_for_room()` (or uses `append_all()`), which counts exactly what `append_batch`
  counts, so `append_all` always either appends or awaits an ack. An empty buffer always
  takes one record, so an oversized record cannot wedge `block` (that one record may take
  the files past the cap).

`MemoryBuffer` (BUFFER_MODE=memory) keeps records in memory until acked and guarantees
nothing across a crash, except for records the caller told it to `spill()` to disk.

Neither class is thread-safe: the service calls them from the event loop thread only,
including acks (confluent-kafka runs delivery callbacks inside `poll()`).

The package, by concern (no module imports `kafka/`, `sources/`, `fleet/`, `config` or
`component_configs`: `tests/unit/test_import_graph.py`):

* `config`: BUFFER_MODE, BUFFER_FULL_POLICY and `BufferConfig` (derived from `Settings`
  in `component_configs`), `BufferOptions`.
* `protocol`: what the sink uses (`Buffer`, `Appended`, `BufferedRecord`).
* `segment_log`: the on-disk format, sans-I/O (frames, ack checkpoints).
* `segment`: one segment's ack map and age samples.
* `files`, `errors`: the filesystem seam a test replaces, the directory lock, the errors.
* `held`, `capped`: records held in memory; the base both buffers share (seqs, the cap
  and its full policy, waiting for room, gauges).
* `recovery`: what `DiskBuffer.open()` finds (validation, damage, checkpoints).
* `reading`: a segment's unacked records read back (`replay()`, `unacked()`).
* `disk_full`: the pure disk-full state machine (time passed in, no I/O): when the disk
  counts as full, when to try it again, what is reported, how much goes back under the cap.
* `disk`: `DiskBuffer`, the I/O shell around all of the above.
* `memory`: `MemoryBuffer` and its spill.
* `modes`: `buffer_from_config`, the buffer BUFFER_MODE asks for.
"""
