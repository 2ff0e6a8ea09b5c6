"""Reading an offline W&B run back, for the tests that check what a run logged (test_wandb_logger,
test_experiments, test_report). wandb >= 0.2x writes run-<id>.wandb from its Go core and no longer
ships a Python reader (wandb.sdk.internal.datastore is gone), so this is the documented record-log
format (the LevelDB log: a 7-byte header ":W&B" 0xBEE1 0, then 32 KiB blocks of records, each a CRC-32,
a length, a type FULL/FIRST/MIDDLE/LAST and data), decoded with wandb's own protobuf Record."""

import json
import struct
import zlib
from pathlib import Path


def read_records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2

    data, block, header = path.read_bytes(), 32768, 7
    assert struct.unpack("<4sHB", data[:header]) == (b":W&B", 0xBEE1, 0), "not a W&B record log"
    records, index, pending = [], header, b""
    while index + header <= len(data):
        left = block - index % block
        if left < header:  # a block's trailer: zero padding
            index += left
            continue
        checksum, length, kind = struct.unpack("<IHB", data[index:index + header])
        if kind == 0:  # zeros to the end of a block
            index += left
            continue
        chunk = data[index + header:index + header + length]
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == checksum, f"bad record checksum at {index}"
        index += header + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # FULL, or LAST of FIRST/MIDDLE.../LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def set_item(target: dict, item) -> None:
    path = list(item.nested_key) or [item.key]
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = json.loads(item.value_json)


class OfflineRun:
    """What an offline run holds: its run record, config, history rows, final summary, files, artifacts."""

    def __init__(self, run_dir: Path):
        (self.dir,) = (run_dir / "wandb").glob("offline-run-*")
        (log_file,) = self.dir.glob("run-*.wandb")
        records = read_records(log_file)
        # wandb-core writes the file's last block when it closes it, after run.finish() has returned
        assert any(record.HasField("exit") for record in records), f"{log_file}: no exit record, not closed yet"
        self.run, self.config, self.history, self.summary, self.files, self.artifacts = None, {}, [], {}, [], []
        for record in records:
            kind = record.WhichOneof("record_type")
            if kind == "run":
                self.run = record.run
                for item in record.run.config.update:
                    set_item(self.config, item)
            elif kind == "config":
                for item in record.config.update:
                    set_item(self.config, item)
            elif kind == "history":
                row = {}
                for item in record.history.item:
                    set_item(row, item)
                self.history.append(row)
            elif kind == "summary":
                for item in record.summary.update:
                    set_item(self.summary, item)
            elif kind == "files":
                self.files += [file.path for file in record.files.files]
            elif kind == "artifact":
                self.artifacts.append(record.artifact)

    def series(self, key: str, step_key: str) -> list[tuple]:
        return [(row[step_key], row[key]) for row in self.history if key in row]
