"""Documents in and out: lossless round trips on the real BioCreative V CDR release, offsets in
three units on hand-made Unicode documents, and every bad input a clear DocumentError."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.documents import Annotation, Collection, Document, Location, Passage, Relation
from service.documents.formats import WRITABLE, Format, read_documents, sniff, write_documents
from service.documents.model import DocumentError
from service.documents.offsets import OffsetUnit, from_units, length, to_units

CDR = ("CDR_DevelopmentSet.BioC.xml", "CDR_DevelopmentSet.PubTator.txt")


def _slice(text: str, start: int, end: int, unit: OffsetUnit) -> str:
    """``text`` cut at offsets counted in ``unit``: what a Java, JavaScript or byte-level reader does."""
    if unit is OffsetUnit.UTF8:
        return text.encode("utf-8")[start:end].decode("utf-8")
    if unit is OffsetUnit.UTF16:
        return text.encode("utf-16-le")[2 * start : 2 * end].decode("utf-16-le")
    return text[start:end]


@pytest.mark.parametrize("name", CDR)
@pytest.mark.parametrize("unit", list(OffsetUnit))
def test_real_cdr_files_round_trip_losslessly(shared_data: Path, name: str, unit: OffsetUnit) -> None:
    data = (shared_data / "bc5cdr-original" / name).read_bytes()
    fmt = sniff(data, name)
    assert fmt is (Format.BIOC_XML if name.endswith(".xml") else Format.PUBTATOR)
    collection = read_documents(data, fmt, unit, name)
    assert len(collection.documents) == 500
    annotations = [(p, a) for p in collection.passages() for a in p.annotations]
    assert len(annotations) > 9000 and sum(len(d.relations) for d in collection.documents) > 500
    single = [(p, a) for p, a in annotations if len(a.locations) == 1]
    assert all(p.text[a.start : a.end] == a.text for p, a in single)  # the gold slices its passage
    again = read_documents(write_documents(collection, fmt, unit), fmt, unit, "written")
    assert again == collection  # documents, passages, infons, annotations, relations
    for other in (Format.BIOC_XML, Format.BIOC_JSON, Format.JSONL):  # and through the other formats
        moved = read_documents(write_documents(collection, other, unit), other, unit)
        assert [[(a.id, a.infons, a.locations, a.text) for a in p.annotations] for p in moved.passages()] == [
            [(a.id, a.infons, a.locations, a.text) for a in p.annotations] for p in collection.passages()
        ]


def _unicode_collection() -> Collection:
    title = "Naïve 😀 p53 in 蛋白质"
    abstract = "e\u0301-cadherin and 𝛼-actinin bind IL-2."
    t = Passage(0, title, {"type": "title"})
    t.annotations = [
        Annotation("0", {"type": "protein"}, [Location(8, 11)], "p53"),
        Annotation("1", {"type": "protein"}, [Location(15, 18)], "蛋白质"),
    ]
    a = Passage(len(title) + 1, abstract, {"type": "abstract"})
    a.annotations = [
        Annotation("2", {"type": "protein", "identifier": "X1"}, [Location(0, 11)], "e\u0301-cadherin"),
        Annotation("3", {"type": "protein"}, [Location(16, 25)], "𝛼-actinin"),
        Annotation("4", {"type": "protein"}, [Location(31, 35)], "IL-2"),
    ]
    return Collection([Document("9", [t, a], relations=[Relation("R0", {"relation": "binds", "arg1": "X1", "arg2": "X2"})])])


@pytest.mark.parametrize("unit", list(OffsetUnit))
@pytest.mark.parametrize("fmt", WRITABLE)
def test_unicode_offsets_in_every_unit(unit: OffsetUnit, fmt: Format) -> None:
    collection = _unicode_collection()
    for p in collection.passages():
        assert all(p.text[a.start : a.end] == a.text for a in p.annotations)
    written = write_documents(collection, fmt, unit)
    again = read_documents(written, fmt, unit)
    if fmt is not Format.PUBTATOR:  # PubTator recomputes the abstract's offset in the unit; all else is kept
        assert again.passages() == collection.passages()
    assert [[(a.locations, a.text) for a in p.annotations] for p in again.passages()] == [
        [(a.locations, a.text) for a in p.annotations] for p in collection.passages()
    ]
    if fmt is Format.PUBTATOR:  # offsets count over title + " " + abstract, in the unit
        whole = " ".join(p.text for p in collection.passages())
        rows = [line.split("\t") for line in written.decode().splitlines() if line.count("\t") >= 4]
        assert len(rows) == 5 and all(_slice(whole, int(r[1]), int(r[2]), unit) == r[3] for r in rows)


def test_units_differ_where_they_should() -> None:
    text = "a😀é"  # 3 code points, 4 UTF-16 units, 1 + 4 + 2 UTF-8 bytes
    assert [length(text, u) for u in OffsetUnit] == [3, 4, 7]
    assert to_units(text, 2, OffsetUnit.UTF16) == 3 and from_units(text, 5, OffsetUnit.UTF8) == 2
    with pytest.raises(ValueError, match="inside character"):
        from_units(text, 2, OffsetUnit.UTF16)  # between the two halves of the surrogate pair


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        (b"<collection><document><id>1</id><passage>\n<offset>0</offset></document>", Format.BIOC_XML, "line 2"),
        (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
            b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><collection><source>&c;</source></collection>',
            Format.BIOC_XML,
            "EntitiesForbidden",
        ),
        (b'<!DOCTYPE c [<!ENTITY x SYSTEM "file:///etc/passwd">]><collection><key>&x;</key></collection>', Format.BIOC_XML, "refused"),
        (b"<document/>", Format.BIOC_XML, "not <collection>"),
        (
            b"<collection><document><id>1</id><passage><offset>10</offset><text>p53</text>"
            b"<annotation id='a'><location offset='2' length='3'/><text>p53</text></annotation></passage></document></collection>",
            Format.BIOC_XML,
            "annotation a: location 2\\+3 is not inside its passage",
        ),
        (b"1|t|p53 binds\n1\t0\t3\tp53\n", Format.PUBTATOR, "line 2: neither"),
        (b"1\t0\t3\tp53\tprotein\n", Format.PUBTATOR, "line 1: an annotation line before"),
        (b"1|t|p53\n1\t0\t30\tp53\tprotein\n", Format.PUBTATOR, "line 2: offsets 0-30"),
        (b'{"documents": [{"id": "1", "passages": [{"text": "x"}]}]}', Format.BIOC_JSON, "KeyError"),
        (b"[1, 2]", Format.BIOC_JSON, "'documents' list"),
        (b'{"text": "p53", "entities": [{"start": 0, "end": 9, "label": "p"}]}\n', Format.JSONL, "line 1"),
        (b"\xff\xfe", Format.PUBTATOR, "UTF-8"),
    ],
)
def test_bad_input_is_a_clear_document_error(data: bytes, fmt: Format, message: str) -> None:
    with pytest.raises(DocumentError, match=message):
        read_documents(data, fmt, OffsetUnit.CODEPOINT, "input")


def test_gold_from_documents_trains_and_evaluates(shared_data: Path) -> None:
    from service.corpora.load import read_corpus

    docs = read_corpus(shared_data / "bc5cdr-original" / "CDR_DevelopmentSet.PubTator.txt")
    assert len(docs) == 1000  # one text per passage: 500 titles, 500 abstracts
    assert {s.label for d in docs for s in d.spans} == {"Chemical", "Disease"}
    assert all(d.text[s.start : s.end].strip() for d in docs for s in d.spans)


PUBMED = b"""<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">
<PubmedArticleSet>
<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM"><PMID Version="1">101</PMID><Article>
<ArticleTitle>Lithium <i>induced</i> nephrogenic diabetes insipidus.</ArticleTitle>
<Abstract><AbstractText Label="BACKGROUND">IL-2   binds.</AbstractText>
<AbstractText Label="RESULTS">p53 x<sup>2</sup>.</AbstractText></Abstract>
</Article></MedlineCitation></PubmedArticle>
<PubmedArticle><MedlineCitation><PMID Version="1">102</PMID>
<Article><ArticleTitle>No abstract here.</ArticleTitle></Article></MedlineCitation></PubmedArticle>
<DeleteCitation><PMID Version="1">55</PMID></DeleteCitation>
</PubmedArticleSet>
"""


def test_pubmed_xml_gz_as_nlm_distributes_it() -> None:
    import gzip

    from service.documents.pubmed import read_pubmed_xml

    data = gzip.compress(PUBMED)
    assert sniff(data, "pubmed25n0001.xml.gz") is Format.PUBMED and sniff(PUBMED) is Format.PUBMED
    collection, deleted = read_pubmed_xml(data)
    assert deleted == ["55"] and [d.id for d in collection.documents] == ["101", "102"]
    title, background, results = collection.documents[0].passages
    assert title.text == "Lithium induced nephrogenic diabetes insipidus." and title.offset == 0
    assert (background.text, background.infons["section"], background.offset) == ("IL-2 binds.", "BACKGROUND", len(title.text) + 1)
    assert results.text == "p53 x2." and results.offset == background.offset + len(background.text) + 1
    assert [p.text for p in collection.documents[1].passages] == ["No abstract here."]


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        (b"1|t|p53 kinase\n1\t\xc2\xb2\t3\tbc\tX\n", Format.PUBTATOR, "line 2: neither"),  # a superscript digit is no offset
        (b'{"documents":[{"id":"1","passages":[{"offset":Infinity,"text":"a"}]}]}', Format.BIOC_JSON, "OverflowError"),
        (b'{"documents":' + b"[" * 50_000, Format.BIOC_JSON, "RecursionError"),
        (b"<?xml version='1.0' encoding='foo'?><collection/>", Format.BIOC_XML, "LookupError"),
        (b'{"text": "p53 \\ud800 x"}\n', Format.JSONL, "lone surrogate"),
        (
            b"<collection><document><id>1</id><passage><offset>0</offset><text>p53</text>"
            b"<annotation id='a'><text>p53</text></annotation></passage></document></collection>",
            Format.BIOC_XML,
            "annotation a: no location",
        ),
        (b"\x1f\x8b\x08\x00\x00\x00", Format.PUBMED, "EOFError|BadGzipFile"),
    ],
)
def test_hostile_input_is_a_document_error_never_a_crash(data: bytes, fmt: Format, message: str) -> None:
    with pytest.raises(DocumentError, match=message):
        read_documents(data, fmt, OffsetUnit.CODEPOINT, "input")


@pytest.mark.parametrize("fmt", WRITABLE)
def test_our_own_output_reads_back_whatever_the_text_holds(fmt: Format) -> None:
    """Line separators JSON and PubTator carry unescaped, CRLF, a form feed from a PDF, a tab in a
    mention, a BOM in front: written, read back, every annotation still slices its passage."""
    text = "a\u2028b p53\u0085c\r\nAspirin\x0chere"
    passage = Passage(0, text)
    passage.annotations = [
        Annotation("0", {"type": "X", "alternatives": "Y:0.1,Z:0.05", "score": "0.9"}, [Location(4, 7)], "p53"),
        Annotation("1", {"type": "C"}, [Location(11, 18)], "Aspirin"),
    ]
    collection = Collection([Document("9", [passage])])
    written = write_documents(collection, fmt)
    again = read_documents(b"\xef\xbb\xbf" + written, sniff(written), OffsetUnit.CODEPOINT)
    [back] = again.passages()[:1]
    assert [back.text[a.start : a.end] for a in back.annotations] == ["p53", "Aspirin"]
    assert back.annotations[0].infons["alternatives"] == "Y:0.1,Z:0.05"


def test_pubmed_offsets_follow_the_unit() -> None:
    import gzip

    title = "α-syn 😀"
    data = gzip.compress(
        f"<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>1</PMID><Article><ArticleTitle>{title}</ArticleTitle>"
        "<Abstract><AbstractText>p53 binds.</AbstractText></Abstract></Article></MedlineCitation></PubmedArticle>"
        "</PubmedArticleSet>".encode()
    )
    for unit in OffsetUnit:
        abstract = read_documents(data, Format.PUBMED, unit).documents[0].passages[1]
        assert abstract.offset == length(title, unit) + 1
    with pytest.raises(DocumentError, match="not <PubmedArticleSet>"):
        read_documents(gzip.compress(b"<collection/>"), Format.PUBMED)
    assert sniff(gzip.compress(b"<collection><document/></collection>"), "a.xml.gz") is Format.BIOC_XML
