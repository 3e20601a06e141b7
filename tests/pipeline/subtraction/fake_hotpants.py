"""A stand-in for the ``hotpants`` program, for tests only (HOTPANTS is not installable here).

It takes HOTPANTS 5.1's command line (same options, same value counts, same fatal checks and
exit code 1 on errors) and writes the files HOTPANTS writes, in its format: the difference
(float32, the image's header plus REGION00, CONVOL00, KSUM00 ... as strings, PHOTNORM,
NREGION, MASKVAL, DIFFCMD), the noise image (``-oni``, σ, 0 where masked), the mask
(``-omi``, 16-bit unsigned, bit 0x8000 = bad output pixel) and the convolved image (``-oci``).

The numbers are computed, not made up: a kernel is fitted by linear least squares, as
HOTPANTS does, from the ``-ng`` basis (Gaussians of the given widths times polynomials of the
given degrees, on a (2r+1)² grid) plus a background polynomial of order ``-bgo``, on
(2·rss+1)² sub-stamps around the ``-ssf`` stars (or the brightest peaks) with S/N above
``-ft``, weighted by the noise. The kernel is spatially constant (``-ko`` is read but only
order 0 is fitted) and there is one region. Convolution direction (``-c``), normalisation
(``-n``), valid-data limits (``-tu -tl -iu -il``), masks and noise images are honoured; the
noise image is sqrt(σ_unconvolved² + σ_convolved² ⊗ K²) as in HOTPANTS.
"""

from __future__ import annotations

import sys

import numpy as np
from astropy.io import fits
from scipy import ndimage, signal

FILL = 1e-30
FLAG_INPUT_ISBAD = 0x80
FLAG_OUTPUT_ISBAD = 0x8000
ONE_VALUE = (
    "inim tmplim outim tni tmi ini imi ki oni ond oci omi oki ssf cmp rf savexy ef "
    "tu tuk tl tg tr tp iu iuk il ig ir ip r kcs ft sft nft mins mous nrx nry nsx nsy "
    "afssc nss rss ko bgo ssig ks kfm fi fin obs obz nbs nbz v c n fom"
)
VALUE_OPTIONS = {**dict.fromkeys(ONE_VALUE.split(), 1), "gd": 4, "rkw": 2}
SWITCHES = frozenset(
    ["okn", "sconv", "nim", "ndm", "cim", "allm", "nc", "hki", "sht", "nsht", "convvar", "sum"]
)


def fatal(message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(1)


def parse(argv: list[str]) -> dict:
    opts: dict = {"ng": [(6, 0.7), (4, 1.5), (2, 3.0)]}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-"):
            fatal(f"Unexpected string encountered on command line : {arg}")
        name = arg[1:].lower()
        if name in SWITCHES:
            opts[name] = True
            i += 1
        elif name == "ng":
            n = int(argv[i + 1])
            values = argv[i + 2 : i + 2 + 2 * n]
            opts["ng"] = [(int(values[2 * k]), float(values[2 * k + 1])) for k in range(n)]
            i += 2 + 2 * n
        elif name in VALUE_OPTIONS:
            count = VALUE_OPTIONS[name]
            values = argv[i + 1 : i + 1 + count]
            opts[name] = values[0] if count == 1 else values
            i += 1 + count
        else:
            fatal(f"Unknown option : {arg}")
    for required in ("inim", "tmplim", "outim"):
        if required not in opts:
            fatal(f"FATAL ERROR {required} : required command line option")
    return opts


def number(opts: dict, name: str, default: float) -> float:
    return float(opts.get(name, default))


def basis(ng: list[tuple[int, float]], r: int) -> list[np.ndarray]:
    """Alard-Lupton basis: Gaussians times x^i y^j (i + j <= degree), on a (2r+1)² grid."""
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(float)
    out = []
    for degree, sigma in ng:
        g = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
        for i in range(degree + 1):
            for j in range(degree + 1 - i):
                out.append(g * xx**i * yy**j)
    return out


def stamp_centres(opts, data, noise, bad, border, threshold) -> list[tuple[int, int]]:
    """The -ssf stars (1-based x y), then (with -afssc 1, or without -ssf) the brightest peaks;
    kept when the stamp is clear of the border and of masked pixels and the star's peak
    is ``threshold`` σ above the noise."""
    ny, nx = data.shape
    centres = []
    if "ssf" in opts:
        xy = np.atleast_2d(np.loadtxt(opts["ssf"])) - 1.0
        centres += [(round(y), round(x)) for x, y in xy[:, :2].tolist()]
    if "ssf" not in opts or int(number(opts, "afssc", 1)):
        peaks = (data == ndimage.maximum_filter(data, size=7)) & (data > threshold * noise)
        ys, xs = np.nonzero(peaks)
        order = np.argsort(-data[ys, xs])
        centres += list(zip(ys[order], xs[order], strict=True))
    keep = []
    for y, x in centres:
        if border <= y < ny - border and border <= x < nx - border and (y, x) not in keep:
            box = (slice(y - border, y + border + 1), slice(x - border, x + border + 1))
            if not bad[box].any() and data[y, x] > threshold * noise[y, x]:
                keep.append((y, x))
    return keep[:200]


def fit_kernel(conv, target, noise2, centres, r, rss, ng, bgo):
    """Least-squares kernel (and background) taking ``conv`` to ``target`` on the stamps."""
    functions = basis(ng, r)
    rows, rhs, weights = [], [], []
    yy, xx = np.mgrid[-rss : rss + 1, -rss : rss + 1].astype(float)
    for y, x in centres:
        big = conv[y - rss - r : y + rss + r + 1, x - rss - r : x + rss + r + 1]
        cols = [signal.fftconvolve(big, f, mode="valid").ravel() for f in functions]
        scale = max(conv.shape)
        for i in range(bgo + 1):
            for j in range(bgo + 1 - i):
                cols.append((((xx + x) / scale) ** i * ((yy + y) / scale) ** j).ravel())
        rows.append(np.column_stack(cols))
        box = (slice(y - rss, y + rss + 1), slice(x - rss, x + rss + 1))
        rhs.append(target[box].ravel())
        weights.append(1.0 / noise2[box].ravel())
    a = np.vstack(rows)
    b = np.concatenate(rhs)
    w = np.sqrt(np.concatenate(weights))
    coeffs, *_ = np.linalg.lstsq(a * w[:, None], b * w, rcond=None)
    kernel = sum(c * f for c, f in zip(coeffs, functions, strict=False))
    background = coeffs[len(functions) :]
    residual = (a @ coeffs - b) * w
    return kernel, background, float(np.mean(residual**2))


def background_map(shape, background, bgo):
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    scale = max(shape)
    out = np.zeros(shape)
    k = 0
    for i in range(bgo + 1):
        for j in range(bgo + 1 - i):
            out += background[k] * (xx / scale) ** i * (yy / scale) ** j
            k += 1
    return out


def main(argv: list[str]) -> None:
    opts = parse(argv)
    image, header = fits.getdata(opts["inim"], header=True)
    template = fits.getdata(opts["tmplim"])
    image, template = image.astype(float), template.astype(float)
    if image.shape != template.shape:
        fatal("FATAL ERROR : image and template differ in size")
    r, rss = int(number(opts, "r", 10)), int(number(opts, "rss", 15))
    if rss < r:
        fatal(f"FATAL ERROR rss ({rss}) < r ({r}) : conflicting requests")
    limits = {}
    for p, data in (("i", image), ("t", template)):
        upper, lower = number(opts, f"{p}u", 25000.0), number(opts, f"{p}l", 0.0)
        if upper <= 0 or upper < lower:
            fatal(f"FATAL ERROR {p}u ({upper}) : cannot be negative, zero or below {p}l")
        gain, rdnoise = number(opts, f"{p}g", 1.0), number(opts, f"{p}r", 0.0)
        if f"{p}ni" in opts:
            var = fits.getdata(opts[f"{p}ni"]).astype(float) ** 2
        else:  # HOTPANTS's own noise model, from gain and read noise
            var = np.abs(data) / gain + (rdnoise / gain) ** 2
        bad = (data >= upper) | (data <= lower) | (data == FILL) | ~np.isfinite(data)
        if f"{p}mi" in opts:
            bad |= fits.getdata(opts[f"{p}mi"]) > 0
        limits[p] = (var, bad, number(opts, f"{p}uk", upper))
    direction = opts.get("c", "b")
    conv_key = "i" if direction == "i" else "t"  # "best" is taken as the template here
    ref_key = "t" if conv_key == "i" else "i"
    conv, ref = (image, template) if conv_key == "i" else (template, image)
    var_c, bad_c, upk_c = limits[conv_key]
    var_r, bad_r, upk_r = limits[ref_key]
    any_bad = bad_c | bad_r | (conv >= upk_c) | (ref >= upk_r)
    spread_in = ndimage.binary_dilation(any_bad, iterations=r) if any_bad.any() else any_bad
    noise2 = var_c + var_r
    threshold = number(opts, "ft", 20.0)
    wanted = number(opts, "nft", 0.1) * number(opts, "nsx", 10) * number(opts, "nsy", 10)
    centres = stamp_centres(opts, ref, np.sqrt(noise2), spread_in, rss + r, threshold)
    if len(centres) < wanted and number(opts, "sft", 0.5) < 1:  # HOTPANTS retries once
        threshold *= number(opts, "sft", 0.5)
        print(f"Too few stamps were fit, scaling down fitting threshold to {threshold:.2f}",
              file=sys.stderr)  # fmt: skip
        centres = stamp_centres(opts, ref, np.sqrt(noise2), spread_in, rss + r, threshold)
    if len(centres) < 3:
        fatal(f"FATAL ERROR : only {len(centres)} good stamps for the kernel fit")
    bgo = int(number(opts, "bgo", 1))
    kernel, background, x2 = fit_kernel(
        np.where(any_bad, 0.0, conv), np.where(any_bad, 0.0, ref), noise2, centres, r, rss,
        opts["ng"], bgo,
    )  # fmt: skip
    ksum = float(kernel.sum())
    convolved = signal.fftconvolve(np.where(bad_c, 0.0, conv), kernel, mode="same")
    convolved += background_map(conv.shape, background, bgo)
    variance = var_r + signal.fftconvolve(var_c, kernel**2, mode="same")
    norm = opts.get("n", "t")
    if conv_key == "t":
        diff = ref - convolved  # image - convolved template
        if norm == "t":
            diff, variance = diff / ksum, variance / ksum**2
    else:
        diff = convolved - ref  # convolved image - template
        if norm == "i":
            diff, variance = diff / ksum, variance / ksum**2
    noise = np.sqrt(np.maximum(variance, 0.0))
    mask = np.zeros(image.shape, np.uint16)
    mask[bad_c | bad_r] |= FLAG_INPUT_ISBAD | FLAG_OUTPUT_ISBAD
    spread_out = ndimage.binary_dilation(bad_c, iterations=r) if bad_c.any() else bad_c
    mask[spread_out] |= FLAG_OUTPUT_ISBAD
    mask[:r], mask[-r:], mask[:, :r], mask[:, -r:] = (FLAG_OUTPUT_ISBAD,) * 4
    out_bad = (mask & FLAG_OUTPUT_ISBAD) != 0
    fill, fill_noise = number(opts, "fi", FILL), number(opts, "fin", 0.0)
    diff[out_bad], noise[out_bad] = fill, fill_noise
    good = ~out_bad
    head = header.copy()
    head["SOFTNAME"] = ("HOTPanTS", "The software that differenced this image")
    head["SOFTVERS"] = ("5.1.11", "Version")
    head["REGION00"] = f"[1:{image.shape[1]},1:{image.shape[0]}]"
    head["CONVOL00"] = "TEMPLATE" if conv_key == "t" else "IMAGE"
    head["KSUM00"] = (f"{ksum:.4f}", "Kernel Sum")
    head["SSSIG00"] = (f"{np.sqrt(x2):.4f}", "Average Figure of Merit across Stamps")
    head["SSSCAT00"] = ("0.0000", "Stdev in Figure of Merit")
    head["X2NRM00"] = (
        f"{np.mean((diff[good] / noise[good]) ** 2):.4f}",
        "1/N * SUM (diff/noise)^2",
    )
    head["NX2NRM00"] = (str(int(good.sum())), "Number of pixels in X2NRM")
    head["DMEAN00"] = (f"{np.mean(diff[good]):.4f}", "Mean of diff image; good pixels")
    head["DSIGE00"] = (f"{np.std(diff[good]):.4f}", "Stdev of diff image; good pixels")
    head["DSIG00"] = (f"{np.mean(noise[good]):.4f}", "Mean of noise image; good pixels")
    head["DIFFCMD"] = " ".join(["hotpants", *argv])
    head["PHOTNORM"] = (norm, "Direction of photometric normalization")
    head["NREGION"] = (1, "Number of independent regions")
    head["MASKVAL"] = (fill, "Value of Masked Pixels")
    head["KERINFO"] = False
    fits.PrimaryHDU(diff.astype(np.float32), head).writeto(opts["outim"], overwrite=True)
    if "oni" in opts:
        nhead = header.copy()
        nhead["OBJECT"] = "HOTPanTS Noise Image"
        nhead["GAIN"], nhead["RDNOISE"], nhead["MASKVAL"] = 1.0, 0.0, fill_noise
        fits.PrimaryHDU(noise.astype(np.float32), nhead).writeto(opts["oni"], overwrite=True)
    if "omi" in opts:  # astropy stores uint16 as int16 with BZERO = 32768, like HOTPANTS
        fits.PrimaryHDU(mask, header.copy()).writeto(opts["omi"], overwrite=True)
    if "oci" in opts:
        out = convolved / ksum if (conv_key == "t" and norm == "t") else convolved
        fits.PrimaryHDU(out.astype(np.float32), header.copy()).writeto(opts["oci"], overwrite=True)
    print("SUCCESS", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
