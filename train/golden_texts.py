"""The fixed texts whose entities every exported bundle records in ``golden.json``.

Written for this project (no corpus text): sentences in the style of MEDLINE abstracts that
touch every JNLPBA type, non-ASCII letters (Greek, accents, CJK, an emoji) whose offsets must
survive, text with no entities, and one text long enough to be cut into several windows.
"""

from __future__ import annotations

_LONG = " ".join(
    [
        "Peripheral blood mononuclear cells were isolated from twelve healthy donors and stimulated with anti-CD3 antibodies.",
        "Expression of the interleukin-4 receptor alpha chain increased within six hours, whereas STAT6 phosphorylation peaked later.",
        "In Jurkat T cells, a dominant negative form of the c-Jun N-terminal kinase abolished induction of the IL-2 promoter.",
        "Transfection of a luciferase reporter driven by three tandem NF-AT binding sites confirmed the role of calcineurin.",
        "Northern blot analysis showed that c-fos mRNA accumulated rapidly, while GATA-3 transcripts declined in Th1 cells.",
    ]
    * 4
)

GOLDEN_TEXTS: tuple[str, ...] = (
    "IL-2 gene expression and NF-kappa B activation through CD28 requires reactive oxygen production by 5-lipoxygenase in human T cells.",
    "The c-myc promoter binds E2F in HeLa cells and in peripheral blood monocytes.",
    "Glucocorticoid receptor levels were measured in lymphocytes from patients with acute leukemia.",
    "Tyrosine phosphorylation of STAT1 was induced by interferon-alpha in U937 cells.",
    "The human T-cell leukemia virus type I Tax protein transactivates the IL-2 receptor alpha gene.",
    "Binding of AP-1 to the TRE site of the collagenase gene was reduced in THP-1 macrophages.",
    "We detected GM-CSF mRNA and TNF-α transcripts in activated eosinophils.",
    "Le facteur NF-κB régule l'expression du gène IL-8 dans les cellules épithéliales.",
    "Overexpression of Bcl-2 protected B lymphocytes from apoptosis induced by Fas ligand.",
    "The octamer motif in the immunoglobulin heavy chain enhancer is recognised by Oct-2 in B cells.",
    "蛋白质 p53 binds DNA in 细胞 🧬 while MDM2 keeps it in check.",
    "No entities are mentioned in this sentence about the weather.",
    "Erythroid progenitors express GATA-1, and the beta-globin locus control region contains its binding sites.",
    "Human CD4+ T lymphocytes infected with HIV-1 showed lower levels of IκBα protein.",
    "Vitamin D3 receptor mRNA was quantified by RT-PCR in the monocytic cell line THP-1.",
    "",
    _LONG,
)
