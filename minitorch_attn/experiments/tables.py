"""The papers' ablation tables as experiments: one function per table, each listing its rows as variants.

Every variant is a model configuration (see :func:`minitorch_attn.experiments.runner.build_model`) and the
paper's top-1 error for that row (from the course's reference transcription of CBAM arXiv 1807.06521v2 and
BAM arXiv 1807.06514; ``None`` where the paper has no such row). The papers measured ResNet-50 on ImageNet or
CIFAR-100; we measure a ResNet-10-style net on 32×32 cluttered digits, so the comparison is of *rankings and
gaps*, never of the numbers themselves.

Why the reduction ratios differ from the papers': their r = 16 divides C = 256…2048 channels into 16…128 hidden
units. Our stages have 16…128 channels, where r = 16 would leave a single hidden unit in the first stage, so
the course's default is r = 4 (4…32 hidden units). BAM's r grid {4, 8, 16, 32} is shifted by the same factor
of four to {1, 2, 4, 8}: the same octave steps, the same hidden widths relative to the paper's default.
"""
from __future__ import annotations

from dataclasses import dataclass, field

#: The course default for every channel MLP at our widths (see the module docstring).
REDUCTION = 4


@dataclass(frozen=True)
class Variant:
    """One row of a table: a short ``name`` (used in file names), a ``label`` for tables and figures, the
    model configuration, and the paper's top-1 error (%) for the row, or None."""

    name: str
    label: str
    model: dict
    paper_error: float | None = None


@dataclass(frozen=True)
class Experiment:
    """A table: its ``variants`` in the paper's row order and the row the others are compared with."""

    name: str
    title: str
    source: str
    variants: tuple
    reference: str
    notes: str = ""
    localisation: bool = False
    extra: dict = field(default_factory=dict)

    def variant(self, name):
        for variant in self.variants:
            if variant.name == name:
                return variant
        known = ", ".join(v.name for v in self.variants)
        raise ValueError(f"experiment {self.name!r} has no variant {name!r}; its variants are: {known}")


def resnet(attention=None, **options):
    """A ResNet-10-style model configuration with ``attention`` and its options."""
    bam_in_every_block = options.pop("bam_in_every_block", False)
    return {"backbone": "resnet", "attention": attention, "attention_options": options,
            "bam_in_every_block": bam_in_every_block}


def mobilenet(attention=None, **options):
    """A MobileNet-style model configuration with ``attention`` and its options."""
    return {"backbone": "mobilenet", "attention": attention, "attention_options": options,
            "bam_in_every_block": False}


def bam_default():
    """BAM at the bottlenecks with d = 4 and the course's r: the configuration of every table's "BAM" row,
    spelled once so that identical runs are recognised (and shared) across tables."""
    return resnet("bam", dilation_val=4, reduction_ratio=REDUCTION)


def cbam_pooling():
    """CBAM Table 1: which global pooling feeds the channel MLP (channel attention only, r fixed).

    Rows: baseline; AvgPool (= SE); MaxPool; AvgPool & MaxPool (CBAM's). Paper: 24.56, 23.14, 23.20, 22.80.
    """
    return Experiment(
        "cbam-pooling", "CBAM Table 1: channel-attention pooling", "CBAM Table 1 (ImageNet, ResNet-50)",
        (Variant("none", "baseline", resnet(), 24.56),
         Variant("avg", "AvgPool (SE)", resnet("se", reduction_ratio=REDUCTION), 23.14),
         Variant("max", "MaxPool", resnet("cbam", reduction_ratio=REDUCTION, pool_types=("max",),
                                          no_spatial=True), 23.20),
         Variant("avg-max", "AvgPool & MaxPool", resnet("cbam", reduction_ratio=REDUCTION, no_spatial=True),
                 22.80)),
        reference="none")


def cbam_spatial():
    """CBAM Table 2: how the spatial gate compresses channels (channel pooling vs a 1×1 conv) and its kernel.

    Rows: channel only; + spatial with a 1×1 conv, k = 3 and 7; + spatial with [avg; max] channel pooling,
    k = 3 and 7. Paper: 22.80, 22.96, 22.90, 22.68, 22.66 (all with the channel gate first).
    """
    def spatial(compress, k):
        return resnet("cbam", reduction_ratio=REDUCTION, compress=compress, kernel_size=k)

    return Experiment(
        "cbam-spatial", "CBAM Table 2: spatial attention", "CBAM Table 2 (ImageNet, ResNet-50)",
        (Variant("channel", "channel", resnet("cbam", reduction_ratio=REDUCTION, no_spatial=True), 22.80),
         Variant("conv1x1-k3", "+ spatial (1×1 conv, k=3)", spatial("conv1x1", 3), 22.96),
         Variant("conv1x1-k7", "+ spatial (1×1 conv, k=7)", spatial("conv1x1", 7), 22.90),
         Variant("pool-k3", "+ spatial (avg&max, k=3)", spatial("pool", 3), 22.68),
         Variant("pool-k7", "+ spatial (avg&max, k=7)", spatial("pool", 7), 22.66)),
        reference="channel")


def cbam_arrangement():
    """CBAM Table 3: the order of the two gates.

    Rows: channel only (SE); channel → spatial (CBAM's); spatial → channel; both in parallel (sum, then σ).
    Paper: 23.14, 22.66, 22.78, 22.95.
    """
    def arranged(arrangement):
        return resnet("cbam", reduction_ratio=REDUCTION, arrangement=arrangement)

    return Experiment(
        "cbam-arrangement", "CBAM Table 3: arranging the channel and spatial gates",
        "CBAM Table 3 (ImageNet, ResNet-50)",
        (Variant("se", "channel (SE)", resnet("se", reduction_ratio=REDUCTION), 23.14),
         Variant("channel-spatial", "channel → spatial", arranged("channel-spatial"), 22.66),
         Variant("spatial-channel", "spatial → channel", arranged("spatial-channel"), 22.78),
         Variant("parallel", "channel & spatial in parallel", arranged("parallel"), 22.95)),
        reference="se")


def cbam_backbones():
    """CBAM Tables 4 and 5: a ResNet and a MobileNet-style net, each without attention, with SE, with CBAM.

    Paper (top-1 error): ResNet-18 29.60, 29.41, 29.27 (Table 4); MobileNet α = 0.7 34.86, 32.50, 31.51
    (Table 5).
    """
    return Experiment(
        "cbam-backbones", "CBAM Tables 4 and 5: backbones with SE and CBAM",
        "CBAM Table 4 (ResNet-18) and Table 5 (MobileNet α = 0.7), ImageNet",
        (Variant("resnet-none", "ResNet", resnet(), 29.60),
         Variant("resnet-se", "ResNet + SE", resnet("se", reduction_ratio=REDUCTION), 29.41),
         Variant("resnet-cbam", "ResNet + CBAM", resnet("cbam", reduction_ratio=REDUCTION), 29.27),
         Variant("mobilenet-none", "MobileNet", mobilenet(), 34.86),
         Variant("mobilenet-se", "MobileNet + SE", mobilenet("se", reduction_ratio=REDUCTION), 32.50),
         Variant("mobilenet-cbam", "MobileNet + CBAM", mobilenet("cbam", reduction_ratio=REDUCTION), 31.51)),
        reference="resnet-none")


def bam_hyperparameters():
    """BAM Table 1(a): dilation d ∈ {1, 2, 4, 6} at the default r, and the reduction ratio at d = 4.

    Paper (CIFAR-100, ResNet-50): base 21.49; d = 1, 2, 4, 6: 20.47, 20.28, 20.00, 20.08; r = 4, 8, 16, 32:
    20.46, 20.56, 20.00, 21.24. Our r grid is the paper's divided by four (module docstring).
    """
    def bam(d, r):
        return resnet("bam", dilation_val=d, reduction_ratio=r)

    dilations = [Variant(f"d{d}", f"d = {d}", bam(d, REDUCTION), paper)
                 for d, paper in ((1, 20.47), (2, 20.28), (4, 20.00), (6, 20.08))]
    ratios = [Variant(f"r{r}", f"r = {r} (paper {4 * r})", bam(4, r), paper)
              for r, paper in ((1, 20.46), (2, 20.56), (8, 21.24))]
    return Experiment(
        "bam-hyperparameters", "BAM Table 1(a): dilation value and reduction ratio",
        "BAM Table 1(a) (CIFAR-100, ResNet-50)",
        (Variant("none", "baseline", resnet(), 21.49), *dilations, *ratios),
        reference="none",
        notes="d = 4 is also the r = 4 row (the paper's r = 16): it is run once.")


def bam_branches():
    """BAM Table 1(b): channel branch only, spatial branch only, both fused by max, product or sum.

    Paper (CIFAR-100, ResNet-50): 21.49 (base), 21.29, 21.24, 20.28, 20.21, 20.00.
    """
    def bam(**options):
        return resnet("bam", reduction_ratio=REDUCTION, **options)

    return Experiment(
        "bam-branches", "BAM Table 1(b): the two branches and how they are fused",
        "BAM Table 1(b) (CIFAR-100, ResNet-50)",
        (Variant("none", "baseline", resnet(), 21.49),
         Variant("channel", "channel only", bam(branches="channel"), 21.29),
         Variant("spatial", "spatial only", bam(branches="spatial"), 21.24),
         Variant("max", "both, max", bam(fusion="max"), 20.28),
         Variant("product", "both, product", bam(fusion="product"), 20.21),
         Variant("sum", "both, sum (BAM)", bam_default(), 20.00)),
        reference="none")


def bam_placement():
    """BAM Table 2 and Table 5: at the bottlenecks vs inside every block (BAM-C), and BAM vs SE vs CBAM.

    Paper (CIFAR-100, ResNet-50): base 21.49, BAM-C 20.88, BAM 20.00 (Table 2); SE 20.72 (Table 5). CBAM is
    not in BAM's tables. SE and CBAM here sit in every block with the course's r, so they cost more
    parameters than BAM at the bottlenecks; the report lists params beside each row.
    """
    return Experiment(
        "bam-placement", "BAM Tables 2 and 5: placement, and BAM vs SE vs CBAM",
        "BAM Table 2 and Table 5 (CIFAR-100, ResNet-50)",
        (Variant("none", "baseline", resnet(), 21.49),
         Variant("bam-every-block", "BAM-C (every block)",
                 resnet("bam", reduction_ratio=REDUCTION, bam_in_every_block=True), 20.88),
         Variant("bam", "BAM (bottlenecks)", bam_default(), 20.00),
         Variant("se", "SE (every block)", resnet("se", reduction_ratio=REDUCTION), 20.72),
         Variant("cbam", "CBAM (every block)", resnet("cbam", reduction_ratio=REDUCTION), None)),
        reference="none")


def gradcam_localisation():
    """CBAM Section 4.3 / Fig. 5, measured: Grad-CAM of none / SE / CBAM / BAM against ground-truth masks.

    The paper shows Grad-CAM pictures and softmax scores of the true class; here each trained model's
    Grad-CAM on the test images is scored by the energy inside the digit's box and the pointing game.
    """
    return Experiment(
        "gradcam", "Grad-CAM localisation: none vs SE vs CBAM vs BAM", "CBAM Fig. 5 (qualitative in the paper)",
        (Variant("none", "ResNet", resnet()),
         Variant("se", "ResNet + SE", resnet("se", reduction_ratio=REDUCTION)),
         Variant("cbam", "ResNet + CBAM", resnet("cbam", reduction_ratio=REDUCTION)),
         Variant("bam", "ResNet + BAM", bam_default())),
        reference="none", localisation=True)


TABLES = (cbam_pooling, cbam_spatial, cbam_arrangement, cbam_backbones, bam_hyperparameters, bam_branches,
          bam_placement, gradcam_localisation)
EXPERIMENTS = {table().name: table for table in TABLES}


def get(name):
    """The :class:`Experiment` called ``name`` (a one-line error listing the known names otherwise)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]()
