"""Storage behind one interface: a local folder by default, ``abfs://`` Azure Data Lake via adlfs.

Everything that reads or writes the lake goes through here so that a URI decides the backend and
no caller branches on it. An ``azureml://`` URI (how Azure ML reports a job's output) is resolved
through the workspace's datastore to the ``abfs://`` container behind it. Writes are atomic so a
failed step never leaves a half-written file where a reader would find it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import posixpath
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import fsspec
import polars as pl

from salesrisk import workspace
from salesrisk.settings import get_settings

REMOTE_SCHEMES = ("abfs://", "abfss://", "az://", workspace.SCHEME)


class StorageError(RuntimeError):
    """A URI could not be read or written; the message names the URI."""


def is_remote(uri: str) -> bool:
    return uri.startswith(REMOTE_SCHEMES)


def reject_asset_reference(uri: str) -> None:
    """An ``azureml:<name>:<version>`` input only means something inside an Azure ML job (which
    mounts it and passes a path): here it would be "no such file", which hides the real mistake."""
    if uri.startswith("azureml:") and not uri.startswith("azureml://"):
        raise StorageError(
            f"{uri}: an Azure ML data asset reference (azureml:<name>:<version>) is resolved by Azure ML "
            "when it runs the job (compute=azureml); on this machine pass a Parquet file, folder or abfs:// URI"
        )


def require_output_folder(output: str) -> None:
    """A step's --output is a folder it may create; an existing file there is a mistake to name."""
    if not is_remote(output) and Path(output).is_file():
        raise StorageError(f"{output}: --output is a file; expected a folder (new or existing)")


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a local path or a remote URI without mangling the scheme."""
    if is_remote(uri) or "://" in uri:  # also azureml://jobs/<job>/outputs/<name>/paths/...
        return posixpath.join(uri.rstrip("/"), *parts)
    return str(Path(uri, *parts))


def concrete(uri: str) -> str:
    """``uri`` itself, or for an ``azureml://`` datastore path or job output the ``abfs://`` URI
    of the blobs behind it (looked up in the workspace)."""
    if workspace.is_workspace_uri(uri):
        try:
            return workspace.to_abfs(uri)
        except workspace.WorkspaceURIError as error:
            raise StorageError(str(error)) from error
    return uri


def _abfs_account(uri: str) -> str | None:
    # abfs://container@account.dfs.core.windows.net/path
    rest = uri.split("://", 1)[1]
    head = rest.split("/", 1)[0]
    if "@" in head:
        return head.split("@", 1)[1].split(".", 1)[0]
    return None


def _abfs_path(uri: str) -> str:
    """adlfs wants ``container/path``; strip the ``@account.host`` part if present."""
    rest = uri.split("://", 1)[1]
    head, _, tail = rest.partition("/")
    container = head.split("@", 1)[0]
    return f"{container}/{tail}".rstrip("/")


def adlfs_options(uri: str) -> dict[str, Any]:
    """Credentials for adlfs: a connection string from settings, else DefaultAzureCredential."""
    settings = get_settings()
    if settings.azure_storage_connection_string is not None:
        return {"connection_string": settings.azure_storage_connection_string.get_secret_value()}
    account = _abfs_account(uri)
    if account is None:
        raise StorageError(
            f"{uri}: no storage account in the URI and no "
            "SALESRISK_AZURE_STORAGE_CONNECTION_STRING set; expected "
            "abfs://<container>@<account>.dfs.core.windows.net/<path>"
        )
    from azure.identity import DefaultAzureCredential

    return {"account_name": account, "credential": DefaultAzureCredential()}


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem that holds ``uri`` and the path to hand it."""
    uri = concrete(uri)
    if is_remote(uri):
        import adlfs

        return adlfs.AzureBlobFileSystem(**adlfs_options(uri)), _abfs_path(uri)
    return fsspec.filesystem("file"), str(Path(uri).resolve())


def polars_storage_options(uri: str) -> dict[str, str] | None:
    """Options for polars' native cloud reader, which does not take a connection string."""
    uri = concrete(uri)
    if not is_remote(uri):
        return None
    settings = get_settings()
    if settings.azure_storage_connection_string is not None:
        parts = dict(
            item.split("=", 1)
            for item in settings.azure_storage_connection_string.get_secret_value().split(";")
            if "=" in item
        )
        if parts.get("UseDevelopmentStorage", "").lower() == "true":
            return {"use_emulator": "true"}  # Azurite on its default port 10000
        options = {"account_name": parts.get("AccountName", "")}
        if "AccountKey" in parts:
            options["account_key"] = parts["AccountKey"]
        if "SharedAccessSignature" in parts:
            options["sas_token"] = parts["SharedAccessSignature"]
        endpoint = parts.get("BlobEndpoint")
        if endpoint:
            # An explicit endpoint (Azurite on any port: http://127.0.0.1:PORT/devstoreaccount1).
            # Not ``use_emulator``: object_store then ignores the endpoint and dials port 10000.
            options["endpoint"] = endpoint.rstrip("/")
            options["allow_http"] = str(endpoint.startswith("http://")).lower()
        return options
    account = _abfs_account(uri)
    return {"account_name": account} if account else {}


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.exists(path)


def list_parquet(uri: str) -> list[str]:
    """Every Parquet file at or under ``uri``, sorted, as paths on its filesystem."""
    fs, path = filesystem(uri)
    if not fs.exists(path):
        raise StorageError(f"{uri}: no such file or folder")
    if fs.isfile(path):
        return [path]
    return sorted(p for p in fs.find(path) if p.endswith(".parquet"))


def scan_parquet(uri: str, *, hive: bool = True) -> pl.LazyFrame:
    """Lazily scan a Parquet file or hive-partitioned folder, local or remote.

    Filters on partition columns are pushed down by polars, so only matching partitions are opened.
    """
    uri = concrete(uri)
    fs, path = filesystem(uri)
    if not fs.exists(path):
        raise StorageError(f"{uri}: no such file or folder")
    is_dir = fs.isdir(path)
    source = uri.rstrip("/") + "/**/*.parquet" if is_dir else uri
    if not is_remote(uri):
        source = str(Path(path, "**", "*.parquet")) if is_dir else path
    return pl.scan_parquet(
        source,
        hive_partitioning=hive and is_dir,
        storage_options=polars_storage_options(uri),
        missing_columns="insert",
    )


def read_parquet(uri: str) -> pl.DataFrame:
    return scan_parquet(uri).collect()


def write_parquet(df: pl.DataFrame, uri: str) -> str:
    """Write one Parquet file atomically: readers see the old file or the new one, never half."""
    if is_remote(uri):
        buffer = io.BytesIO()
        df.write_parquet(buffer)
        return write_bytes(buffer.getvalue(), uri)
    return _replace_local(Path(uri), df.write_parquet)


def fingerprint(uri: str) -> str:
    """A content fingerprint of a file or folder: changes when any byte or file name changes.

    Local files are hashed by content; remote blobs by their ETag/MD5 so nothing is downloaded.
    """
    fs, root = filesystem(uri)
    if not fs.exists(root):
        raise StorageError(f"{uri}: no such file or folder")
    files = [root] if fs.isfile(root) else sorted(fs.find(root))
    digest = hashlib.blake2b(digest_size=16)
    for file in files:
        digest.update(posixpath.relpath(file, root).encode() if file != root else b".")
        if is_remote(uri):
            info = fs.info(file)
            md5 = (info.get("content_settings") or {}).get("content_md5")
            digest.update(str(md5 or info.get("etag") or info.get("size")).encode())
        else:
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


# --- hive-partitioned datasets (docs/data-lake-layout.md) -----------------------------------

PartitionFilter = Mapping[str, Callable[[str], bool]]


def partition_values(path: str) -> dict[str, str]:
    """The ``key=value`` folder names in a path, in order: the file's hive partition."""
    values: dict[str, str] = {}
    for part in path.replace("\\", "/").split("/")[:-1]:
        key, sep, value = part.partition("=")
        if sep and key:
            values[key] = value
    return values


def _dataset_files(uri: str) -> list[tuple[str, dict[str, str]]]:
    """Each Parquet file under ``uri`` as (URI, partition values below ``uri``), from a listing."""
    uri = concrete(uri)
    files = list_parquet(uri)
    fs, root = filesystem(uri)
    if files == [root]:
        return [(uri, {})]
    out = []
    for file in files:
        relative = posixpath.relpath(file, root) if is_remote(uri) else os.path.relpath(file, root)
        out.append((join(uri, relative) if is_remote(uri) else file, partition_values(relative)))
    return out


def list_dataset(uri: str, where: PartitionFilter | None = None) -> list[str]:
    """URIs of the Parquet files under ``uri`` whose partition values pass ``where``.

    Decided from folder names alone, so a file of a partition that does not match is never
    opened. A key absent from a file's path cannot prune it and keeps the file.
    """
    return [
        file
        for file, values in _dataset_files(uri)
        if not where or all(key not in values or accept(values[key]) for key, accept in where.items())
    ]


def scan_dataset(
    uri: str,
    *,
    where: PartitionFilter | None = None,
    hive_schema: Mapping[str, pl.DataType] | None = None,
) -> pl.LazyFrame:
    """Lazily scan only the partitions of ``uri`` that pass ``where``; partition keys become columns.

    Raises StorageError naming the URI when nothing matches, so a mistyped tenant is one clear
    error rather than an empty training set.
    """
    files = [
        (file, values)
        for file, values in _dataset_files(uri)
        if not where or all(key not in values or accept(values[key]) for key, accept in where.items())
    ]
    if not files:
        raise StorageError(
            f"{uri}: no Parquet files" + (f" in partitions matching the filter on {', '.join(sorted(where))}" if where else "")
        )
    options = polars_storage_options(uri)
    scans = []
    for file, values in files:
        # partition columns from the folders below ``uri`` only: a '=' higher up the path (which
        # polars' own hive parsing would take for a partition) never becomes a column
        columns = [_hive_value(value, _hive_type(key, value, hive_schema)).alias(key) for key, value in values.items()]
        scans.append(pl.scan_parquet(file, storage_options=options).with_columns(columns))
    return scans[0] if len(scans) == 1 else pl.concat(scans, how="diagonal_relaxed")


def _hive_type(key: str, value: str, hive_schema: Mapping[str, pl.DataType] | None) -> pl.DataType:
    """The declared type, else Date for ISO dates (as ``write_dataset`` writes them), else String."""
    if hive_schema and key in hive_schema:
        return hive_schema[key]
    try:
        date.fromisoformat(value)
        return pl.Date
    except ValueError:
        return pl.String


def _hive_value(value: str, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.Date:
        return pl.lit(date.fromisoformat(value), dtype=pl.Date)
    return pl.lit(value).cast(dtype)


def _partition_value(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def write_dataset(
    df: pl.DataFrame,
    uri: str,
    partition_by: Sequence[str],
    *,
    file_name: str = "part-0.parquet",
) -> list[str]:
    """Write ``df`` as hive partitions ``uri/k1=v1/k2=v2/file_name``, each file atomically.

    Partition columns live in the folder names only (the hive convention), so readers get them
    back from :func:`scan_dataset`. Partitions are written in sorted order: same frame, same files.
    """
    keys = list(partition_by)
    written: list[str] = []
    if df.is_empty():
        return written
    for values, part in sorted(df.partition_by(keys, as_dict=True, maintain_order=True).items()):
        folders = [f"{key}={_partition_value(value)}" for key, value in zip(keys, values)]
        target = join(uri, *folders, file_name)
        write_parquet(part.drop(keys), target)
        written.append(target)
    return written


def write_bytes(data: bytes, uri: str, *, mode: int = 0o644) -> str:
    """Write a file atomically: readers see the old content or the new, never half.

    A blob becomes visible only when its upload commits, so a remote file is uploaded in one call
    (adlfs' ``mv`` would be a copy, not a rename). A local file is written under a temporary name
    in the same folder, synced, then renamed over the target; ``mode`` is set before any byte is
    written (fsspec's own uncommitted local files live in the system temp folder, so their move
    may be a copy across file systems, and take the default mode after the move).
    """
    if is_remote(uri):
        fs, path = filesystem(uri)
        fs.pipe_file(path, data)
        return uri
    _replace_local(Path(uri), lambda handle: handle.write(data), mode=mode)
    return uri


def _replace_local(path: Path, write: Callable[[Any], Any], *, mode: int = 0o644) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return str(path)


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    if not fs.exists(path):
        raise StorageError(f"{uri}: no such file")
    with fs.open(path, "rb") as handle:
        return handle.read()


def remove(uri: str) -> None:
    """Delete a file or folder (recursively) if it exists."""
    fs, path = filesystem(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)
