"""The .vbnf file: round trip, prefix loading, atomic writes, `vbnf info`, and one FormatError per kind of damage."""
import dataclasses
import json
import os
import struct
import warnings
import zlib

import pytest
import torch

from engine import fileformat
from engine.cli import main as vbnf_main
from engine.errors import FormatError, VbnfError
from engine.fileformat_cli import state_text
from engine.field import InferenceField, NeuralField
from engine.fileformat import (
    CHUNK_OVERHEAD, HEADER_BYTES, MAGIC, TruncatedModelWarning, chunk_states, load_model, load_model_bytes,
    model_layout, save_model, save_model_bytes, theoretical_bytes,
)
from engine.grids import LevelRows, kmeans_grid_from_dense
from engine.octree import cell_corners, octree_from_child_masks
from engine.render import render_field_rays
from fields import sphere_shell_octree

KINDS = ["dense", "vq", "random", "kmeans"]


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def make_field(kind: str = "vq", bits: int = 4, level: int = 5, base: int = 2, feature_dim: int = 8,
               seed: int = 0) -> InferenceField:
    train_kind = "dense" if kind == "kmeans" else kind
    nf = NeuralField(sphere_shell_octree(level), base, train_kind, feature_dim=feature_dim,
                     bits=None if train_kind == "dense" else bits, scene_center=torch.tensor([0.1, -0.2, 0.3]),
                     scene_half_size=1.25, seed=seed)
    with torch.no_grad():  # features big enough that the LODs differ visibly
        for p in nf.grid.grid_parameters():
            p.mul_(30.0)
    field = nf.freeze({"provenance": {"dataset": "synthetic/sphere", "steps": 7}})
    if kind == "kmeans":
        field = dataclasses.replace(field, levels=kmeans_grid_from_dense(field.levels, bits), grid_kind="kmeans")
    return field


def fp16(field: InferenceField) -> InferenceField:
    """The field with every stored float rounded to fp16, as the file keeps it."""
    r = lambda t: None if t is None else t.half().float()
    return dataclasses.replace(
        field, levels=[LevelRows(r(x.codebook), x.indices, r(x.features), x.bits) for x in field.levels],
        decoder={k: r(v) for k, v in field.decoder.items()})


def assert_same_field(got: InferenceField, want: InferenceField) -> None:
    assert got.grid_kind == want.grid_kind and got.base_level == want.base_level and got.n_lods == want.n_lods
    assert torch.equal(got.scene_center, want.scene_center) and got.scene_half_size == want.scene_half_size
    assert len(got.levels) == len(want.levels) == len(got.corners)
    assert got.octree.max_level == want.octree.max_level
    for l in range(got.octree.max_level + 1):
        assert torch.equal(got.octree.cells[l], want.octree.cells[l])
        assert torch.equal(got.octree.child_mask[l], want.octree.child_mask[l])
        if l < got.octree.max_level:  # the finest level's child starts mean nothing (no children)
            assert torch.equal(got.octree.child_start[l], want.octree.child_start[l])
    for k in range(len(got.levels)):
        assert torch.equal(got.corners[k], want.corners[k])
        a, b = got.levels[k], want.levels[k]
        assert a.bits == b.bits
        for name in ("codebook", "indices", "features"):
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None) == (y is None), name
            if x is not None:
                assert x.dtype == y.dtype and torch.equal(x, y), f"LOD {k} {name}"
    assert got.decoder.keys() == want.decoder.keys()
    for name in want.decoder:
        assert got.decoder[name].dtype == torch.float32 and torch.equal(got.decoder[name], want.decoder[name])


def probe_rays(n: int = 48, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays (origins, unit dirs [n,3]) from a sphere of radius 3 around the scene center, aimed near it."""
    gen = torch.Generator().manual_seed(seed)
    center = torch.tensor([0.1, -0.2, 0.3])
    origins = center + 3.0 * torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=1)
    targets = center + 0.3 * torch.randn(n, 3, generator=gen)
    return origins, torch.nn.functional.normalize(targets - origins, dim=1)


def render(field: InferenceField, lod: int | None = None) -> torch.Tensor:
    o, d = probe_rays()
    return render_field_rays(field, field.max_lod if lod is None else lod, o, d, torch.ones(3))["rgb"]


def rewrite_chunk(data: bytes, index: int, payload: bytes | None = None, length: int | None = None,
                  fix_crc: bool = True) -> bytes:
    """The file with chunk `index` (0 = metadata) given a new payload and/or length field; CRC recomputed."""
    chunk = model_layout(data).chunks[index] if index else _meta_chunk(data)
    start = chunk.offset + 16
    old_payload = data[start:start + chunk.length]
    payload = old_payload if payload is None else payload
    head = data[chunk.offset:chunk.offset + 8] + struct.pack("<Q", len(payload) if length is None else length)
    crc = zlib.crc32(payload, zlib.crc32(head)) if fix_crc else struct.unpack_from("<I", data, chunk.end - 4)[0]
    return data[:chunk.offset] + head + payload + struct.pack("<I", crc) + data[chunk.end:]


def _meta_chunk(data: bytes):
    length = struct.unpack_from("<Q", data, HEADER_BYTES + 8)[0]
    return fileformat.ChunkInfo("metadata", None, HEADER_BYTES, length, HEADER_BYTES + CHUNK_OVERHEAD + length)


def rewrite_metadata(data: bytes, edit) -> bytes:
    """The file with its metadata JSON passed through `edit(doc)` (valid CRC, so only validation can object)."""
    chunk = _meta_chunk(data)
    doc = json.loads(fileformat.decode_metadata_payload(data[chunk.offset + 16:chunk.offset + 16 + chunk.length]))
    edit(doc)
    return rewrite_chunk(data, 0, json.dumps(doc).encode())


def format_error(data: bytes, **kwargs) -> str:
    with pytest.raises(FormatError) as info:
        load_model_bytes(data, source="m.vbnf", **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith("m.vbnf: ") and " byte " in message, message
    return message


@pytest.fixture(scope="module")
def fields() -> dict[str, InferenceField]:
    return {kind: make_field(kind) for kind in KINDS}


# ---------------------------------------------------------------------------------------------------------------
# Round trip and prefixes


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_equals_the_fp16_rounded_field(tmp_path, fields, kind):
    field = fields[kind]
    path = tmp_path / "m.vbnf"
    written = save_model(path, field, {"metrics": {"psnr": 31.5}})
    assert written == path.stat().st_size
    loaded = load_model(path)
    assert_same_field(loaded, fp16(field))
    assert loaded.metadata == {"provenance": {"dataset": "synthetic/sphere", "steps": 7}, "metrics": {"psnr": 31.5}}
    assert torch.allclose(render(loaded), render(fp16(field)), atol=1e-6)
    assert not [p for p in os.listdir(tmp_path) if p != "m.vbnf"], "temp file left behind"


def test_save_metadata_overrides_field_metadata_and_is_json(fields):
    data = save_model_bytes(fields["vq"], {"provenance": {"steps": 9}, "note": "hi"})
    assert load_model_bytes(data).metadata == {"provenance": {"steps": 9}, "note": "hi"}
    with pytest.raises(VbnfError, match="not JSON-serialisable"):
        save_model_bytes(fields["vq"], {"bad": object()})


def test_big_endian_file_loads_the_same(fields):
    little = load_model_bytes(save_model_bytes(fields["vq"]))
    big_bytes = save_model_bytes(fields["vq"], byte_order=">")
    assert big_bytes[4:6] == b"\xfe\xff" and model_layout(big_bytes).byte_order == "big"
    assert_same_field(load_model_bytes(big_bytes), little)


@pytest.mark.parametrize("kind", ["dense", "vq"])
def test_every_chunk_boundary_prefix_is_a_coarser_model(fields, kind):
    field = fields[kind]
    data = save_model_bytes(field)
    layout = model_layout(data)
    assert layout.total_bytes == len(data) and layout.lod_prefix_bytes[-1] == len(data)
    assert layout.lod_prefix_bytes == sorted(layout.lod_prefix_bytes) and len(layout.lod_prefix_bytes) == 4
    previous = None
    for chunk in layout.chunks:
        cut = chunk.end
        lods = sum(1 for p in layout.lod_prefix_bytes if p <= cut)
        if lods == 0:
            format_error(data[:cut])
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            prefix = load_model_bytes(data[:cut])
        truncated = [w for w in caught if issubclass(w.category, TruncatedModelWarning)]
        assert len(truncated) == (0 if cut == len(data) else 1)
        assert len(prefix.levels) == lods and prefix.n_lods == 4
        assert prefix.octree.max_level == field.base_level + lods - 1
        assert_same_field(prefix, fp16(field).truncated(lods - 1))
        rgb = render(prefix)
        assert torch.isfinite(rgb).all()
        if previous is not None and lods != previous[0]:
            assert not torch.allclose(rgb, previous[1]), "a finer LOD should change the image"
        previous = (lods, rgb)


def test_load_up_to_lod_and_up_to_bytes(tmp_path, fields):
    field = fields["vq"]
    path = tmp_path / "m.vbnf"
    save_model(path, field)
    ladder = model_layout(path).lod_prefix_bytes
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # asking for less is not a truncation
        for lod in range(4):
            assert_same_field(load_model(path, max_lod=lod), fp16(field).truncated(lod))
            assert len(load_model(path, max_bytes=ladder[lod]).levels) == lod + 1
            assert len(load_model(path, max_bytes=ladder[lod] + 1).levels) == lod + 1
            assert len(load_model_bytes(path.read_bytes(), max_bytes=ladder[lod]).levels) == lod + 1
        assert len(load_model(path, max_lod=99).levels) == 4
        assert len(load_model(path, max_bytes=ladder[2], max_lod=1).levels) == 2
    with pytest.raises(FormatError, match=f"below the {ladder[0]} bytes that LOD 0 needs"):
        load_model(path, max_bytes=ladder[0] - 1)
    with pytest.raises(ValueError):
        load_model(path, max_lod=-1)


def test_truncated_file_on_disk_warns_and_loads_complete_lods(tmp_path, fields):
    data = save_model_bytes(fields["dense"])
    ladder = model_layout(data).lod_prefix_bytes
    path = tmp_path / "cut.vbnf"
    path.write_bytes(data[:ladder[2] + 100])
    with pytest.warns(TruncatedModelWarning, match=r"loaded LOD 0\.\.2 of 4"):
        field = load_model(path)
    assert len(field.levels) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_model(path, max_lod=1).levels) == 2  # what was asked for is all there


def test_model_layout_of_a_partial_file_and_from_a_path(tmp_path, fields):
    data = save_model_bytes(fields["vq"], {"metrics": {"psnr": 30.0}})
    full = model_layout(data)
    assert full.grid_kind == "vq" and full.bits == [4, 4, 4, 4] and full.n_lods == 4 and full.version == 2
    assert full.metadata["metrics"] == {"psnr": 30.0}
    ends = [c.offset for c in full.chunks[1:]]
    assert ends == [c.end for c in full.chunks[:-1]], "chunks are contiguous"
    assert [(c.kind, c.lod) for c in full.chunks[:5]] == [
        ("metadata", None), ("decoder", None), ("octree", 0), ("codebook", 0), ("indices", 0)]
    part = model_layout(data[:full.lod_prefix_bytes[1] + 5])
    assert part.lod_prefix_bytes == full.lod_prefix_bytes and part.complete_lods == 2
    path = tmp_path / "p.vbnf"
    path.write_bytes(data[:full.chunks[1].offset])  # header and metadata only
    on_disk = model_layout(path)
    assert on_disk.complete_lods == 0 and on_disk.total_bytes == len(data)


@pytest.mark.parametrize("kind", KINDS)
def test_theoretical_size_is_the_payload_without_container(fields, kind):
    field = fields[kind]
    data = save_model_bytes(field)
    layout = model_layout(data)
    container = HEADER_BYTES + (layout.chunks[0].end - layout.chunks[0].offset) + CHUNK_OVERHEAD * (
        len(layout.chunks) - 1)
    assert len(data) - container == sum(c.length for c in layout.chunks[1:])
    raw = sum(length for _, _, length in fileformat.expected_chunks(layout.structure["grid"]))
    assert theoretical_bytes(field) == raw, "the payloads before compression"
    f = field.feature_dim
    expect = 2 * sum(v.numel() for v in field.decoder.values())
    expect += sum(field.octree.cells[l].numel() for l in range(field.octree.max_level))
    for rows in field.levels:
        if kind == "dense":
            expect += rows.n_corners * f * 2
        else:
            expect += -(-rows.n_corners * rows.bits // 8) + (1 << rows.bits) * f * 2
    assert theoretical_bytes(field) == expect


def test_octree_chunks_are_compressed_where_that_is_smaller_and_load_the_same():
    field = make_field("vq", level=7, base=3)
    data = save_model_bytes(field)
    layout = model_layout(data)
    coded = [c for c in layout.chunks if c.coding == "lzma"]
    assert layout.version == 2 and coded and all(c.kind == "octree" for c in coded)
    raw = dict(((kind, lod), n) for kind, lod, n in fileformat.expected_chunks(layout.structure["grid"]))
    assert all(c.length < raw[(c.kind, c.lod)] for c in coded)
    assert_same_field(load_model_bytes(data), fp16(field))
    for k, end in enumerate(layout.lod_prefix_bytes[:-1]):  # prefixes still end on chunk boundaries and render
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TruncatedModelWarning)
            assert len(load_model_bytes(data[:end]).levels) == k + 1


def test_a_version_1_file_still_loads(monkeypatch, good):
    want = load_model_bytes(good)
    monkeypatch.setattr(fileformat, "COMPRESSIBLE_KINDS", ())  # what a version 1 writer wrote, but for the header
    raw = save_model_bytes(make_field("vq"), {"metrics": {"psnr": 30.0}})
    assert all(c.coding == "raw" for c in model_layout(raw).chunks) and len(raw) > len(good)
    assert_same_field(load_model_bytes(with_version(raw, 1)), want)


def _coded_file() -> tuple[bytes, int, fileformat.ChunkInfo]:
    data = save_model_bytes(make_field("vq", level=7, base=3))
    index, chunk = next((i, c) for i, c in enumerate(model_layout(data).chunks) if c.coding == "lzma")
    return data, index, chunk


def test_a_damaged_compressed_chunk_behind_a_valid_crc():
    data, index, chunk = _coded_file()
    payload = bytearray(data[chunk.offset + 16:chunk.offset + 16 + chunk.length])
    payload[len(payload) // 2] ^= 0xFF
    damaged = rewrite_chunk(data, index, bytes(payload))
    message = format_error(damaged)
    assert "compressed octree chunk" in message and f"byte {chunk.offset + 16}" in message
    layout = model_layout(damaged)  # and `vbnf info` does not call it complete
    assert chunk_states(damaged, layout)[index] == "damaged"
    assert state_text(layout, chunk_states(damaged, layout)).startswith(
        f"damaged: the octree chunk of LOD {chunk.lod} (bytes {chunk.offset}..{chunk.end}) fails its CRC check or "
        "does not decode")
    cut = bytes(payload[:-4])  # ends early: fewer bytes than its grid needs (the table is edited to agree)

    def shorter(doc):
        doc["structure"]["chunks"][index - 1]["length"] = len(cut)
    message = format_error(rewrite_chunk(rewrite_metadata(data, shorter), index, cut))
    assert "compressed octree chunk" in message


@pytest.mark.parametrize("what", ["indices", "version 1", "unknown coding", "not smaller"])
def test_compression_only_where_the_format_allows_it(good, what):
    data, index, chunk = _coded_file()
    table_index = index - 1

    def edit(doc):
        chunks = doc["structure"]["chunks"]
        if what == "indices":
            i = next(i for i, c in enumerate(chunks) if c["kind"] == "indices")
            chunks[i]["coding"] = "lzma"
        elif what == "unknown coding":
            chunks[table_index]["coding"] = "zstd"
        elif what == "not smaller":
            chunks[table_index]["length"] = 10 ** 6
    edited = rewrite_metadata(data, edit)
    if what == "version 1":
        edited = with_version(edited, 1)
    assert "invalid metadata" in format_error(edited)


def test_base_level_zero_and_an_empty_level(tmp_path):
    field = make_field("vq", level=3, base=0, bits=2)
    assert_same_field(load_model_bytes(save_model_bytes(field)), fp16(field))
    # an octree whose finest level is empty still round-trips (nothing to render there, but valid)
    u8 = torch.uint8
    masks = [torch.tensor([1], dtype=u8), torch.tensor([0], dtype=u8), torch.zeros(0, dtype=u8)]
    nf = NeuralField(octree_from_child_masks(masks), 1, "vq", feature_dim=4, bits=1)
    empty = nf.freeze()
    assert_same_field(load_model_bytes(save_model_bytes(empty)), fp16(empty))


# ---------------------------------------------------------------------------------------------------------------
# Atomic writes


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch, fields, failure):
    path = tmp_path / "m.vbnf"
    save_model(path, fields["vq"])
    before = path.read_bytes()

    def half_then_fail(fd, data):
        os.write(fd, data[: len(data) // 2])
        raise failure

    monkeypatch.setattr(fileformat, "_write_all", half_then_fail)
    with pytest.raises(VbnfError if isinstance(failure, OSError) else KeyboardInterrupt) as info:
        save_model(path, fields["dense"])
    if isinstance(failure, OSError):
        assert str(path) in str(info.value) and "No space left" in str(info.value)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.vbnf"], "temp file left behind"
    load_model(path)


def test_write_into_a_missing_folder_is_one_line(tmp_path, fields):
    with pytest.raises(VbnfError, match="cannot write .*missing"):
        save_model(tmp_path / "missing" / "m.vbnf", fields["vq"])


# ---------------------------------------------------------------------------------------------------------------
# Damage: each kind gives one FormatError naming the problem and the byte offset


@pytest.fixture(scope="module")
def good() -> bytes:
    return save_model_bytes(make_field("vq"), {"metrics": {"psnr": 30.0}})


def test_wrong_magic(good):
    assert "wrong magic b'PK\\x03\\x04'" in format_error(b"PK\x03\x04" + good[4:])
    assert "wrong magic" in format_error(b"\x89PN")
    assert "at byte 0" in format_error(b"")


def with_version(data: bytes, version: int) -> bytes:
    out = bytearray(data)
    out[6:8] = struct.pack("<H", version)
    out[12:16] = struct.pack("<I", zlib.crc32(bytes(out[:12])))
    return bytes(out)


def test_unknown_version_and_bad_header(good):
    v3 = with_version(good, 3)
    assert "unknown format version 3" in format_error(v3) and "byte 6" in format_error(v3)
    bom = bytearray(good)
    bom[4:6] = b"\x00\x00"
    assert "byte-order mark" in format_error(bytes(bom))
    crc = bytearray(good)
    crc[8] ^= 1
    assert "header CRC mismatch" in format_error(bytes(crc))


def test_length_field_past_the_end_or_absurd(good):
    layout = model_layout(good)
    for index in (1, 4, len(layout.chunks) - 1):
        message = format_error(rewrite_chunk(good, index, length=layout.chunks[index].length + 10 ** 6))
        assert "length field" in message and "points past the end" in message
        assert f"byte {layout.chunks[index].offset + 8}" in message
    huge = bytearray(good)
    huge[HEADER_BYTES + 8:HEADER_BYTES + 16] = struct.pack("<Q", 2 ** 62)
    assert "exceeds the" in format_error(bytes(huge))
    assert "disagrees" in format_error(rewrite_chunk(good, 3, length=2 ** 63))


def test_crc_mismatch_names_chunk_and_offset(good):
    layout = model_layout(good)
    chunk = layout.chunks[3]  # codebook of LOD 0
    bad = bytearray(good)
    bad[chunk.offset + 20] ^= 0x10
    message = format_error(bytes(bad))
    assert "CRC mismatch in the codebook chunk of LOD 0" in message and f"byte {chunk.end - 4}" in message


def test_truncated_before_first_lod(good):
    first = model_layout(good).lod_prefix_bytes[0]
    for cut in (5, 20, 40, 600, first - 1):
        message = format_error(good[:cut])
        assert "truncated" in message or "nothing renderable" in message


def test_trailing_bytes_and_wrong_chunk_order(good):
    assert "unexpected bytes after the last chunk" in format_error(good + b"\0" * 7)
    layout = model_layout(good)
    a, b = layout.chunks[3], layout.chunks[4]  # swap codebook and indices of LOD 0
    swapped = good[:a.offset] + good[b.offset:b.end] + good[a.offset:a.end] + good[b.end:]
    assert "expected the codebook chunk" in format_error(swapped)


def test_garbage_json(good):
    assert "not valid JSON" in format_error(rewrite_chunk(good, 0, b'{"structure": [1, 2,'))
    assert "not UTF-8" in format_error(rewrite_chunk(good, 0, b"\xff\xfe{}"))
    assert "expected an object" in format_error(rewrite_chunk(good, 0, b"[1, 2, 3]"))
    assert "cannot be read" in format_error(rewrite_chunk(good, 0, b"[" * 100_000))


def test_metadata_nesting_is_bounded(good, fields):
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["x"] = {"y": 1}
        node = node["x"]
    assert "nests deeper than" in format_error(rewrite_metadata(good, _set("metadata", deep)))
    with pytest.raises(VbnfError, match="nests deeper than"):
        save_model_bytes(fields["vq"], {"deep": deep})


def _set(path: str, value):
    def edit(doc):
        node = doc
        keys = path.split("/")
        for key in keys[:-1]:
            node = node[int(key) if isinstance(node, list) else key]
        key = int(keys[-1]) if isinstance(node, list) else keys[-1]
        node[key] = float(node[key]) if value == "FLOAT" else value  # "FLOAT": the integer there, as a JSON float
    return edit


@pytest.mark.parametrize("path, value, words", [
    ("structure/grid/levels/1/bits", "eight", "bits must be an integer"),
    ("structure/grid/levels/1/bits", 40, "bits must be an integer in 1..16"),
    ("structure/grid/levels/0/bits", True, "bits must be an integer"),
    ("structure/grid/base_level", -1, "base_level"),
    ("structure/grid/base_level", 30, "base_level"),
    ("structure/grid/n_lods", 0, "n_lods"),
    ("structure/grid/n_lods", 3, "must list 1..3 LODs"),
    ("structure/grid/feature_width", 0, "feature_width"),
    ("structure/grid/feature_width", 16, "decoder.feature_dim"),
    ("structure/grid/kind", "hash", "grid.kind"),
    ("structure/grid/kind", "dense", "dense grid"),
    ("structure/grid/octree_nodes/1", 9, "octree_nodes[1]"),
    ("structure/grid/octree_nodes/2", 10 ** 30, "octree_nodes[2]"),
    ("structure/grid/levels/2/corners", 10 ** 12, "corners"),
    ("structure/grid/levels/2/cells", 3, "cells"),
    ("structure/grid/levels/3", None, "must be a JSON object"),
    ("structure/scene/center", [0, 0], "3 numbers"),
    ("structure/scene/center/1", float("nan"), "finite"),
    ("structure/scene/half_size", -1.0, "half_size"),
    ("structure/decoder/hidden", 128, "decoder.hidden"),
    ("structure/chunks/3/length", 999, "length must be"),
    # JSON numbers that equal the right integer but are not integers (1.0 == 1 in Python): a float that passed as
    # a chunk's LOD or length broke the chunk plan's indexing and slicing later, outside FormatError
    ("structure/chunks/2/lod", 0.0, "must be the codebook chunk of LOD 0"),
    ("structure/chunks/2/lod", -0.0, "must be the codebook chunk of LOD 0"),
    ("structure/chunks/0/length", "FLOAT", "length must be"),
    ("structure/grid/levels/1/lod", 1.0, "must be LOD 1"),
    ("structure/grid/levels/1/octree_level", "FLOAT", "must be LOD 1"),
    ("structure/grid/levels/1/codebook_rows", "FLOAT", "codebook_rows must be"),
    ("structure/grid/levels/1/feature_width", "FLOAT", "feature_width must equal"),
    ("structure/decoder/hidden", "FLOAT", "decoder.hidden"),
    ("structure/chunks/1/kind", "codebook", "must be the octree chunk"),
    ("structure/chunks", {}, "must be a JSON array"),
    ("structure", None, "structure must be a JSON object"),
    ("metadata", [1], "'metadata' is a list"),
])
def test_metadata_with_a_valid_crc_is_still_validated(good, path, value, words):
    message = format_error(rewrite_metadata(good, _set(path, value)))
    assert words in message and f"byte {HEADER_BYTES + 16}" in message


def test_child_masks_that_disagree_with_the_next_level(good):
    layout = model_layout(good)
    octree1 = next(c for c in layout.chunks if c.kind == "octree" and c.lod == 1)
    payload = bytearray(good[octree1.offset + 16:octree1.offset + 16 + octree1.length])
    payload[0] ^= 1 << next(b for b in range(8) if not payload[0] >> b & 1)  # one more child
    message = format_error(rewrite_chunk(good, layout.chunks.index(octree1), bytes(payload)))
    assert "bits set but level" in message and f"byte {octree1.offset + 16}" in message


def test_child_masks_with_the_right_count_but_other_corners(good):
    layout = model_layout(good)
    index, chunk = next((i, c) for i, c in enumerate(layout.chunks) if c.kind == "octree" and c.lod == 1)
    payload = bytearray(good[chunk.offset + 16:chunk.offset + 16 + chunk.length])
    field = load_model_bytes(good)
    masks = [field.octree.child_mask[l].clone() for l in range(field.octree.max_level + 1)]
    level = field.base_level
    want = cell_corners(field.octree, level + 1)[0].numel()
    for i in range(len(payload)):  # move one child bit within a mask byte until the corner count changes
        for src in range(8):
            for dst in range(8):
                if payload[i] >> src & 1 and not payload[i] >> dst & 1:
                    trial = masks[:level] + [masks[level].clone()] + [torch.zeros(0, dtype=torch.uint8)]
                    trial[level][i] = payload[i] ^ (1 << src) ^ (1 << dst)
                    trial[-1] = torch.zeros(int(field.octree.cells[level + 1].numel()), dtype=torch.uint8)
                    if cell_corners(octree_from_child_masks(trial), level + 1)[0].numel() != want:
                        payload[i] ^= (1 << src) ^ (1 << dst)
                        message = format_error(rewrite_chunk(good, index, bytes(payload)))
                        assert "corners but the metadata says" in message
                        return
    pytest.fail("no mask change altered the corner count")


def test_non_finite_values_behind_a_valid_crc(good):
    layout = model_layout(good)
    for kind in ("codebook", "decoder"):
        index, chunk = next((i, c) for i, c in enumerate(layout.chunks) if c.kind == kind)
        payload = bytearray(good[chunk.offset + 16:chunk.offset + 16 + chunk.length])
        payload[2:4] = struct.pack("<H", 0x7C00)  # +inf in fp16
        assert "non-finite" in format_error(rewrite_chunk(good, index, bytes(payload)))


def test_saving_a_field_that_does_not_fit_fp16_is_refused(fields):
    field = fields["vq"]
    bad = dataclasses.replace(field, decoder={**field.decoder, "b0": field.decoder["b0"] + 1e6})
    with pytest.raises(VbnfError, match="decoder tensor b0"):
        save_model_bytes(bad)


# ---------------------------------------------------------------------------------------------------------------
# Paths and the CLI


def test_missing_file_directory_and_unreadable_file(tmp_path, monkeypatch, capsys):
    with pytest.raises(FormatError, match="cannot read .*nope.vbnf: No such file"):
        load_model(tmp_path / "nope.vbnf")
    with pytest.raises(FormatError, match="is a directory"):
        load_model(tmp_path)
    with pytest.raises(FormatError, match="not a regular file"):
        load_model("/dev/null")
    path = tmp_path / "locked.vbnf"
    path.write_bytes(b"VBNF")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(fileformat, "open", denied, raising=False)
    with pytest.raises(FormatError, match="cannot read .*locked.vbnf: Permission denied"):
        load_model(path)
    monkeypatch.undo()
    assert vbnf_main(["info", str(tmp_path / "nope.vbnf")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.vbnf" in err and "Traceback" not in err


def test_info_prints_the_ladder_bits_and_metrics(tmp_path, capsys):
    field = make_field("vq", bits=5)
    path = tmp_path / "m.vbnf"
    save_model(path, field, {"metrics": {"psnr": 28.25, "ssim": 0.91}})
    assert vbnf_main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    layout = model_layout(path)
    for cumulative in layout.lod_prefix_bytes:
        assert f" {cumulative} " in out
    assert "vbnf format v2" in out and "vq" in out and "5 bits" in out and "psnr: 28.25" in out
    assert "ssim: 0.91" in out and "synthetic/sphere" in out and "(complete)" in out
    assert f"theoretical size) {theoretical_bytes(field)} B" in out

    path.write_bytes(path.read_bytes()[:layout.lod_prefix_bytes[1] + 3])
    assert vbnf_main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "partial" in out and "2 of 4 LODs present" in out and out.count("(missing)") == 2

    assert vbnf_main(["info", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["lod_prefix_bytes"] == layout.lod_prefix_bytes and doc["metadata"]["metrics"]["psnr"] == 28.25


def test_magic_constant():
    assert MAGIC == b"VBNF"


def test_info_decodes_a_compressed_chunk_in_bounded_pieces():
    """`vbnf info` checks that a compressed chunk decodes to what its grid needs without holding it: a stream that
    ends early, one that runs long and one that would expand implausibly are all 'damaged'."""
    import lzma
    from engine.fileformat import DECODE_PIECE_BYTES, LZMA_FILTERS, _decodes_whole
    raw = torch.randint(0, 4, (3 * DECODE_PIECE_BYTES + 7,), generator=torch.Generator().manual_seed(0),
                        dtype=torch.uint8).numpy().tobytes()  # several pieces, compressible 4:1 like child masks
    packed = lzma.compress(raw, format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)
    chunk = fileformat.ChunkInfo("octree", 0, 0, len(packed), 0, "lzma")
    assert _decodes_whole(memoryview(packed), chunk, len(raw))
    assert not _decodes_whole(memoryview(packed), chunk, len(raw) - 1)
    assert not _decodes_whole(memoryview(packed), chunk, len(raw) + 1)
    assert not _decodes_whole(memoryview(packed[:-8]), chunk, len(raw))
    zeros = lzma.compress(bytes(64 << 20), format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)  # ~10 kB for 64 MB
    assert not _decodes_whole(memoryview(zeros), chunk, 64 << 20)  # over the loader's expansion bound
