"""AliEn's XML collection format both ways (jalien.catalogue.collections)."""

from __future__ import annotations

import pytest

from jalien.catalogue.collections import (
    Collection,
    CollectionError,
    file_of,
    parse,
    render,
)

JALIEN_WRITTEN = """<?xml version="1.0"?>
<alien>
  <collection name="/alice/cern.ch/user/a/alice/coll.xml">
    <event name="1">
      <file name="a.root" aclId="" broken="0" ctime="2024-01-02 03:04:05" dir="7" entryId="9" \
expiretime="" gowner="alice" guid="0a4a5a0e-1b2c-11ef-8000-0242ac120002" guidtime="" jobid="" \
lfn="/alice/data/run1/a.root" md5="d41d8cd98f00b204e9800998ecf8427e" owner="alice" perm="755" \
replicated="0" size="10" turl="alien:///alice/data/run1/a.root" type="f" />
    </event>
    <event name="2">
      <file name="b &amp; c.root" lfn="/alice/data/run2/b &amp; c.root" size="20" type="f" />
    </event>
    <info command="find /alice/data *.root -x coll.xml" creator="alice" \
date="Tue Jan 02 03:04:05 UTC 2024" timestamp="1704164645000" />
  </collection>
</alien>"""


def test_reads_what_jalien_writes():
    coll = parse(JALIEN_WRITTEN)
    assert coll.name == "/alice/cern.ch/user/a/alice/coll.xml"
    assert coll.lfns == ["/alice/data/run1/a.root", "/alice/data/run2/b & c.root"]
    first = coll.files[0]
    assert (first.size, first.guid, first.owner, first.event) == (
        10,
        "0a4a5a0e-1b2c-11ef-8000-0242ac120002",
        "alice",
        "1",
    )
    assert coll.command.startswith("find /alice/data")
    assert coll.timestamp == 1704164645000


def test_round_trip_in_jaliens_shape():
    files = [
        file_of(
            "/alice/data/x.root",
            guid="g1",
            size=5,
            md5="m",
            owner="u",
            gowner="g",
            perm="644",
            ctime_ms=1704164645000,
            jobid=42,
        ),
        file_of('/alice/data/q"<&>.root', size=1),
    ]
    text = render(
        Collection(name="c.xml", files=files, command="find / * -x c.xml", creator="u"),
        now_ms=1704164645000,
    )
    lines = text.splitlines()
    assert lines[:4] == [
        '<?xml version="1.0"?>',
        "<alien>",
        '  <collection name="c.xml">',
        '    <event name="1">',
    ]
    assert lines[4].startswith('      <file name="x.root" aclId="" broken="0" ')
    assert 'ctime="2024-01-02 03:04:05"' in lines[4]
    assert 'jobid="42" lfn="/alice/data/x.root"' in lines[4]
    assert lines[4].endswith('turl="alien:///alice/data/x.root" type="f" />')
    assert lines[-3] == (
        '    <info command="find / * -x c.xml" creator="u" '
        'date="Tue Jan 02 03:04:05 UTC 2024" timestamp="1704164645000" />'
    )
    assert lines[-2:] == ["  </collection>", "</alien>"]
    back = parse(text)
    assert back.lfns == ["/alice/data/x.root", '/alice/data/q"<&>.root']
    assert back.files[0].jobid == 42 and back.files[0].perm == "644"


def test_empty_collection_has_a_name():
    text = render(Collection(), now_ms=0)
    assert '<collection name="tempCollection">' in text
    assert parse(text).files == []


@pytest.mark.parametrize(
    "bad, why",
    [
        ("", "not well-formed"),
        ("just text", "not well-formed"),
        ("<alien><collection>", "not well-formed"),
        ("<other/>", "not an AliEn XML collection"),
        ('<alien><file lfn="relative.root"/></alien>', "absolute lfn"),
        ('<alien><file lfn="/a" size="big"/></alien>', "not a number"),
    ],
)
def test_malformed_is_a_clear_error(bad, why):
    with pytest.raises(CollectionError, match=why):
        parse(bad)


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE alien [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<alien><collection name="&lol3;"/></alien>"""

EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE alien [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<alien><file lfn="/a" md5="&x;"/></alien>"""

DTD_ONLY = """<?xml version="1.0"?>
<!DOCTYPE alien SYSTEM "http://example.invalid/alien.dtd">
<alien/>"""


@pytest.mark.parametrize("hostile", [BILLION_LAUGHS, EXTERNAL, DTD_ONLY])
def test_hostile_xml_is_refused_before_any_entity_is_expanded(hostile):
    with pytest.raises(CollectionError, match="not allowed"):
        parse(hostile)


def test_undeclared_entity_is_an_error():
    with pytest.raises(CollectionError, match="undefined entity"):
        parse('<alien><file lfn="/a&zz;"/></alien>')


def test_too_many_files():
    text = "<alien>" + '<file lfn="/a"/>' * 3 + "</alien>"
    with pytest.raises(CollectionError, match="more than 2 files"):
        parse(text, max_files=2)
