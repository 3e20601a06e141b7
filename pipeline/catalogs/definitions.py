"""The reference catalogues SkySift can calibrate against, and our column names.

This module is the single source of truth for

* our names of the normalised catalogue columns: :data:`RA_COLUMN`, :data:`DEC_COLUMN`,
  :func:`mag_column` and :func:`err_column` (``"gmag"``/``"e_gmag"`` for a band we
  calibrate in, ``"gmag_sdss"``/``"e_gmag_sdss"`` for a native band of another system);
* every catalogue's VizieR identifier, the VizieR columns holding its positions and
  magnitudes (the mapping to our names), the column the server-side magnitude limit
  applies to, and its sky footprint (:data:`CATALOGS`).

Band keys. A band SkySift calibrates in is named as in :mod:`pipeline.filters`
(``"B"``, ``"g"``, ``"G"``, ``"Ks"`` ...): grizy are Pan-STARRS1, UBVRI
Johnson-Cousins, u SDSS on the AB scale, G/BP/RP Gaia (E)DR3, JHKs 2MASS. A native
band of another system is ``"<system>:<band>"``: ``"sdss:g"`` (SDSS ugriz as
measured) and ``"smss:g"`` (SkyMapper DR4 uvgriz).

VizieR column names follow each catalogue's VizieR ReadMe (the names the real VizieR
answers carry, as in ``../shared/data/real/catalogs/*.ecsv`` for ATLAS-REFCAT2).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.catalogs.errors import CatalogError

RA_COLUMN = "ra"  # degrees, ICRS (J2000 equinox)
DEC_COLUMN = "dec"

# Systems of native bands that are not themselves calibration bands.
SDSS = "sdss"
SKYMAPPER = "smss"

# Generic position columns tried (after a catalogue's own) when reading a local file.
GENERIC_POSITIONS: tuple[tuple[str, str], ...] = (
    ("RAJ2000", "DEJ2000"),
    ("_RAJ2000", "_DEJ2000"),
    ("RA_ICRS", "DE_ICRS"),
    ("ra", "dec"),
    ("RA", "DEC"),
)


def mag_column(band: str) -> str:
    """Name of the magnitude column of a band key in a normalised catalogue.

    Examples
    --------
    >>> mag_column("B"), mag_column("g"), mag_column("sdss:g")
    ('Bmag', 'gmag', 'gmag_sdss')
    """
    system, _, name = band.rpartition(":")
    return f"{name}mag_{system}" if system else f"{name}mag"


def err_column(band: str) -> str:
    """Name of the magnitude-error column of a band key (``"e_"`` + :func:`mag_column`)."""
    return "e_" + mag_column(band)


@dataclass(frozen=True)
class BandSource:
    """Where one of our bands sits in a catalogue's VizieR table.

    Attributes
    ----------
    band : str
        Our band key (see the module docstring).
    mag : str
        VizieR column of the magnitude.
    err : str or None
        VizieR column of the magnitude error, when the catalogue gives one.
    flux, flux_err : str or None
        Flux and flux-error columns, for catalogues that quote the error of the flux
        instead of the magnitude (Gaia DR3 synthetic photometry): the magnitude error is
        then 1.0857·flux_err/flux.
    """

    band: str
    mag: str
    err: str | None
    flux: str | None = None
    flux_err: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for c in (self.mag, self.err, self.flux, self.flux_err) if c)


@dataclass(frozen=True)
class CatalogDefinition:
    """One reference catalogue: its VizieR table, column mapping and footprint.

    Attributes
    ----------
    key : str
        Our short name (``"ps1"``), used in configs and cache keys.
    title : str
        Human name for messages.
    vizier_id : str
        VizieR table identifier (``"II/349/ps1"``).
    positions : tuple of (str, str)
        Candidate (RA, Dec) column pairs in degrees, preferred first. Names starting
        with ``_`` are computed by VizieR (J2000 positions at epoch J2000).
    bands : tuple of BandSource
        The catalogue's native bands and where they are.
    limit_column : str
        VizieR column the server-side magnitude limit constrains.
    dec_min, dec_max : float
        Declination range covered, degrees.
    alternatives : tuple of str
        Catalogue keys to suggest when a field is outside the footprint or empty.
    note : str
        What the user should know (coverage, depth, positions' epoch).
    """

    key: str
    title: str
    vizier_id: str
    positions: tuple[tuple[str, str], ...]
    bands: tuple[BandSource, ...]
    limit_column: str
    dec_min: float = -90.0
    dec_max: float = 90.0
    alternatives: tuple[str, ...] = ()
    note: str = ""

    @property
    def native_bands(self) -> tuple[str, ...]:
        """Our band keys the catalogue measures directly."""
        return tuple(source.band for source in self.bands)

    def vizier_columns(self) -> list[str]:
        """Columns to ask VizieR for: its default set plus every column we map."""
        names = ["*"]
        for pair in self.positions:
            names.extend(pair)
        for source in self.bands:
            names.extend(source.columns)
        names.append(self.limit_column)
        return list(dict.fromkeys(names))

    def covers(self, dec: float) -> bool:
        """True when the declination is inside the catalogue's footprint."""
        return self.dec_min <= dec <= self.dec_max

    def footprint_message(self) -> str:
        """The footprint in words with the catalogues to try instead."""
        south = self.dec_min > -90.0
        where = f"Dec > {self.dec_min:+g}°" if south else f"Dec < {self.dec_max:+g}°"
        return f"{self.title} covers only {where}: try {_or_list(self.alternatives)}"


def _or_list(keys: tuple[str, ...]) -> str:
    if not keys:
        return "another catalogue"
    return ", ".join(keys[:-1]) + (" or " if len(keys) > 1 else "") + keys[-1]


def _bands(system: str, names: str, mag: str, err: str) -> tuple[BandSource, ...]:
    """BandSources for several bands named by a pattern, e.g. ``"{b}PSF"``."""
    prefix = f"{system}:" if system else ""
    return tuple(
        BandSource(prefix + b, mag.format(b=b), err.format(b=b) if err else None)
        for b in names.split()
    )


def _gaia_synthetic_bands() -> tuple[BandSource, ...]:
    # I/360/syntphot: Johnson-Kron-Cousins UBVRI (our JC), SDSS ugriz, and PS1 y; the
    # errors are quoted for the fluxes (F<band>, e_F<band>).
    jc = tuple(BandSource(b, f"{b}mag", None, f"F{b}", f"e_F{b}") for b in "UBVRI")
    sdss = tuple(BandSource(f"{SDSS}:{b}", f"{b}mag", None, f"F{b}", f"e_F{b}") for b in "ugriz")
    return (*jc, *sdss, BandSource("y", "ymag", None, "Fy", "e_Fy"))


CATALOGS: dict[str, CatalogDefinition] = {
    definition.key: definition
    for definition in (
        CatalogDefinition(
            key="ps1",
            title="Pan-STARRS DR1",
            vizier_id="II/349/ps1",
            positions=(("RAJ2000", "DEJ2000"),),
            bands=_bands("", "g r i z y", "{b}mag", "e_{b}mag"),
            limit_column="rmag",
            dec_min=-30.0,
            alternatives=("skymapper", "atlas", "gaiadr3syn"),
            note="grizy to r≈23; saturates near r≈13.5; positions at the mean epoch (~2012)",
        ),
        CatalogDefinition(
            key="skymapper",
            title="SkyMapper DR4",
            vizier_id="II/379/smssdr4",
            positions=(("_RAJ2000", "_DEJ2000"),),
            bands=_bands(SKYMAPPER, "u v g r i z", "{b}PSF", "e_{b}PSF"),
            limit_column="rPSF",
            dec_max=2.0,
            alternatives=("ps1", "gaiadr3syn"),
            note="southern sky, uvgriz PSF magnitudes (SkyMapper system) to r≈21",
        ),
        CatalogDefinition(
            key="gaiaedr3",
            title="Gaia eDR3",
            vizier_id="I/350/gaiaedr3",
            positions=(("RA_ICRS", "DE_ICRS"),),
            bands=_bands("", "G BP RP", "{b}mag", "e_{b}mag"),
            limit_column="Gmag",
            alternatives=("gaiadr3syn",),
            note="all sky G, BP, RP to G≈21; positions at epoch 2016.0",
        ),
        CatalogDefinition(
            key="atlas",
            title="ATLAS-REFCAT2",
            vizier_id="J/ApJ/867/105/refcat2",
            positions=(("RA_ICRS", "DE_ICRS"),),
            bands=(
                *_bands("", "g r i z", "{b}mag", "e_{b}mag"),
                BandSource("J", "Jmag", "e_Jmag"),
                BandSource("H", "Hmag", "e_Hmag"),
                BandSource("Ks", "Kmag", "e_Kmag"),
            ),
            limit_column="rmag",
            alternatives=("ps1", "gaiadr3syn"),
            note="all sky griz on the Pan-STARRS1 scale to m≈19; positions at epoch 2015.5",
        ),
        CatalogDefinition(
            key="gaiadr3syn",
            title="Gaia DR3 synthetic photometry",
            vizier_id="I/360/syntphot",
            positions=(("_RAJ2000", "_DEJ2000"),),
            bands=_gaia_synthetic_bands(),
            limit_column="rmag",
            alternatives=("atlas", "ps1"),
            note="all sky UBVRI and SDSS ugriz from Gaia XP spectra, G < 17.65 only",
        ),
        CatalogDefinition(
            key="sdss",
            title="SDSS DR16",
            vizier_id="V/154/sdss16",
            positions=(("RA_ICRS", "DE_ICRS"),),
            bands=_bands(SDSS, "u g r i z", "{b}mag", "e_{b}mag"),
            limit_column="rmag",
            alternatives=("ps1", "gaiadr3syn"),
            note="about a third of the sky (northern Galactic cap, equatorial stripes); "
            "contains galaxies as well as stars",
        ),
        CatalogDefinition(
            key="2mass",
            title="2MASS PSC",
            vizier_id="II/246/out",
            positions=(("RAJ2000", "DEJ2000"),),
            bands=(
                BandSource("J", "Jmag", "e_Jmag"),
                BandSource("H", "Hmag", "e_Hmag"),
                BandSource("Ks", "Kmag", "e_Kmag"),
            ),
            limit_column="Jmag",
            alternatives=("atlas",),
            note="all sky J, H, Ks to Ks≈14.3",
        ),
    )
}
CATALOG_NAMES: tuple[str, ...] = tuple(CATALOGS)


def get_definition(name: str) -> CatalogDefinition:
    """The definition of a catalogue by key (case-insensitive).

    Raises
    ------
    CatalogError
        If the name is not one of :data:`CATALOG_NAMES`.
    """
    key = str(name).strip().lower()
    if key not in CATALOGS:
        raise CatalogError(
            f"unknown reference catalogue {name!r}: choose one of {', '.join(CATALOG_NAMES)}"
        )
    return CATALOGS[key]
