"""Envelopes: signed by central, checked by SEs; forged, expired and out-of-scope refused."""

from __future__ import annotations

import base64

import pytest

from jalien.storage.envelope import (
    EnvelopeError,
    EnvelopeSigner,
    EnvelopeVerifier,
    Grant,
    pfn_for,
    pfn_path,
)

GUID = "0a1b2c3d-0000-11ee-8000-000000000001"


def test_pfn_layout_is_aliens():
    url = pfn_for("https://se.example:8443/data/", GUID.upper())
    head, nn, nnnnn, guid = url.rsplit("/", 3)
    assert head == "https://se.example:8443/data" and guid == GUID
    assert len(nn) == 2 and len(nnnnn) == 5 and (nn + nnnnn).isdigit()
    assert pfn_path(url) == f"/data/{nn}/{nnnnn}/{GUID}"


def test_xrootd_pfns_have_an_absolute_path():
    """root://host:port//NN/NNNNN/guid, as JAliEn writes XRootD PFNs."""
    bare = pfn_for("root://127.0.0.1:1094", GUID)
    assert bare.startswith("root://127.0.0.1:1094//") and bare.count("//") == 2
    assert pfn_for("root://se:1094//eos/alice", GUID).startswith("root://se:1094//eos/alice/")
    assert pfn_path(bare).startswith("//")


def test_key_made_once_owner_only(tmp_path):
    first, created = EnvelopeSigner.load_or_create(tmp_path / "env")
    again, created_again = EnvelopeSigner.load_or_create(tmp_path / "env")
    assert created and not created_again
    assert (tmp_path / "env" / "envelope.key").stat().st_mode & 0o077 == 0
    envelope = first.sign(Grant(access="read", pfn="/x"))
    assert again.verifier.check(envelope, "read", "/x").pfn == "/x"
    verifier = EnvelopeVerifier.from_file(tmp_path / "env" / "envelope.pub")
    assert verifier.check(envelope, "read", "/x").access == "read"


def test_refusals(tmp_path):
    signer, _ = EnvelopeSigner.load_or_create(tmp_path / "a", lifetime=60)
    other, _ = EnvelopeSigner.load_or_create(tmp_path / "b")
    good = signer.sign(Grant(access="write", pfn="/se/01/00001/g", size=5, md5="m"))
    check = signer.verifier.check
    assert "/se/01/00001/g" in good or "." in good  # URL-safe: no '&', '=' or '+'
    assert not set("&=+/ ") & set(good)
    with pytest.raises(EnvelopeError, match="grants write"):
        check(good, "read", "/se/01/00001/g")
    with pytest.raises(EnvelopeError, match="not /se/01/00001/h"):
        check(good, "write", "/se/01/00001/h")
    with pytest.raises(EnvelopeError, match="expired"):
        signer.verifier.open(good, now=10**11)
    with pytest.raises(EnvelopeError, match="forged"):
        forged = other.sign(Grant(access="write", pfn="/se/01/00001/g", size=5))
        check(forged, "write", "/se/01/00001/g")
    body, sig = good.split(".")
    raw = base64.urlsafe_b64decode(body + "==").replace(b'"size":5', b'"size":9')
    tampered = base64.urlsafe_b64encode(raw).rstrip(b"=").decode() + "." + sig
    with pytest.raises(EnvelopeError, match="forged"):
        check(tampered, "write", "/se/01/00001/g")
    for junk in ("", "nodot", "!!!.???"):
        with pytest.raises(EnvelopeError) as info:
            check(junk, "write", "/x")
        assert info.value.status in (401, 403)


def test_write_envelopes_book_a_size_and_stat_envelopes_are_short(tmp_path):
    signer, _ = EnvelopeSigner.load_or_create(tmp_path / "a")
    with pytest.raises(ValueError, match="books the file's size"):
        signer.sign(Grant(access="write", pfn="/se/01/00001/g"))
    assert signer.verifier.open(signer.sign(Grant(access="write", pfn="/p", size=0))).size == 0
    write = Grant(access="write", pfn="/p", turl="https://h/p", guid=GUID, size=5, se="S")
    question = signer.verifier.check(signer.stat_envelope(write, now=1000.0), "stat", "/p", 1001)
    assert question.turl == "https://h/p" and question.se == "S" and question.guid == GUID
    assert question.expires - question.issued <= 120 and not question.user
