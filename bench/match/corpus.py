"""Deterministic synthetic articles and rules for the matching benchmark.

The shapes follow ``reference/matching-performance.md`` §3.2: Zipf-distributed common words
with about 6% energy and connectivity terms, 1 to 3 countries, 0 to 3 companies and, half of
the time, a long-tail project name; rules drawn from six templates with random field scopes
and country filters.

That rule workload is deliberately broad (the reference says so): every rule is about energy,
so is every article, and an article matches about 1% of all rules, a hundred at 10,000 rules,
mostly through ``company OR company`` rules and ORs of the commonest energy words. The issue's
targets are set on it, so it stays the default. Alert rules written by people watching
something specific match far fewer articles; ``profile="selective"`` draws such rules
(a project by name, a company together with a country and an energy term, a bilateral energy
topic, two companies together, a term near a company) for a second, clearly labelled figure.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass

from alerts.types import Article, RuleSpec


def _split(text: str, separator: str | None = None) -> list[str]:
    flat = text.replace("\n", " " if separator is None else "")
    return [word.strip() for word in flat.split(separator)]


COMMON = _split("""the of and to in a is that for on it with as was by at be this from are has have
which or an not but its will their were been said also more after new year two first would
over into than about up other one some out can there could all when last only government
minister officials week month company market deal talks plan visit meeting state people
percent million billion since under between three while during including where before next
project agreement country countries talks statement told reporters according report press
official public economic trade cooperation business capital investment price prices demand
supply share shares group board chief executive director spokesman agency ministry national
international regional local city region area development production output capacity growth
plans expected likely could would should may might must early late end start around amid
despite through against without within across among along toward behind beyond""")

ENERGY = _split(
    """crude oil|natural gas|liquefied natural gas|lng|pipeline|pipelines|refinery|refining
|upstream|downstream|opec|brent|wti|barrel|barrels|petroleum|diesel|gasoline|jet fuel|fuel oil
|condensate|shale|offshore|onshore|drilling|rig|exploration|oilfield|gas field|reserves
|terminal|regasification|fsru|tanker|tankers|cargo|cargoes|shipment|price cap|sanctions
|embargo|force majeure|strait of hormuz|suez canal|transit|corridor|rail link|port|seaport
|dry port|subsea cable|fibre optic|power plant|nuclear|reactor|grid|transmission line
|electricity|hydropower|solar|wind farm|coal|thermal power|petrochemical|ammonia|hydrogen
|storage|inventories|output cut|quota|spot price|futures|benchmark|tariff|levy|subsidy
|energy security|energy deal|supply deal|long-term contract|memorandum|intergovernmental
|commission|joint venture|consortium|feasibility study|financing|loan|credit line|barter
|rouble|yuan|rupee|payment|settlement|bank|swift|insurance|freight|shipping|vessel|flotilla
|compressor station|interconnector|offtake|throughput|capacity expansion|turbine|substation
|uranium|enrichment|fuel assemblies|decommissioning|smart grid|battery|charging|biofuel
|ethanol|lpg|naphtha|bitumen|asphalt|lubricants|bunker fuel|gas price|oil price
|crude price""",
    "|",
)

COUNTRIES = _split(
    """Pakistan|Russia|China|India|Iran|Turkey|Qatar|Saudi Arabia|United Arab Emirates
|Kazakhstan|Uzbekistan|Turkmenistan|Afghanistan|Azerbaijan|Georgia|Armenia|Ukraine|Belarus
|Germany|France|Italy|Spain|Norway|Netherlands|Poland|Hungary|Serbia|Greece|Egypt|Algeria
|Libya|Nigeria|Angola|Mozambique|South Africa|Kenya|Ethiopia|Sudan|Iraq|Kuwait|Oman|Bahrain
|Jordan|Israel|Syria|Lebanon|Japan|South Korea|Indonesia|Malaysia|Vietnam|Thailand
|Bangladesh|Sri Lanka|Nepal|Myanmar|Brazil|Argentina|Venezuela|Mexico|Canada|Guyana
|Colombia|Chile|Peru|Ecuador|Australia|Mongolia|Tajikistan|Kyrgyzstan""",
    "|",
)

COMPANIES = _split(
    """Gazprom|Rosneft|Lukoil|Novatek|Transneft|Rosatom|Zarubezhneft|Sovcomflot
|Pakistan State Oil|OGDCL|Sui Northern|Sui Southern|PPL|Mari Petroleum|Attock Refinery
|Byco|Cnergyico|Saudi Aramco|ADNOC|QatarEnergy|NIOC|Sinopec|CNPC|PetroChina|CNOOC|ONGC
|Indian Oil|Reliance|BPCL|HPCL|Shell|BP|ExxonMobil|Chevron|TotalEnergies|Eni|Equinor
|ConocoPhillips|Petrobras|Pemex|Socar|KazMunayGas|Turkmengaz|Uzbekneftegaz|Botas|Vitol
|Trafigura|Glencore|Gunvor|Mercuria|Maersk|MSC|COSCO|China Mobile|Huawei|Nokia|Ericsson
|Siemens Energy|GE Vernova|Hitachi Energy|Westinghouse|EDF|Enel|Iberdrola|Orsted""",
    "|",
)

_SYLLABLES = _split("mar vi dor tal ken ros bel ash qar zen lun dra po si ter nov kal ruh fa mir")
_KINDS = ["Pipeline", "Terminal", "Field", "Corridor", "Refinery", "Port", "Plant", "Project"]


def tail_names(count: int, seed: int = 7) -> list[str]:
    """Return ``count`` distinct long-tail project names such as ``Marvidor Pipeline``."""
    rng = random.Random(seed)
    names: dict[str, None] = {}
    while len(names) < count:
        stem = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
        names.setdefault(f"{stem} {rng.choice(_KINDS)}", None)
    return list(names)


def _zipf_weights(size: int, exponent: float = 1.1) -> list[float]:
    return list(itertools.accumulate(1.0 / (rank**exponent) for rank in range(1, size + 1)))


@dataclass(frozen=True, slots=True)
class Corpus:
    """Generated articles plus the vocabularies the rule generator draws from."""

    articles: list[Article]
    tails: list[str]


def make_articles(count: int, *, words: int = 400, seed: int = 1) -> Corpus:
    """Return ``count`` articles of about ``words`` words (title, lead and body)."""
    rng = random.Random(seed)
    tails = tail_names(20_000)
    common_w = _zipf_weights(len(COMMON))
    energy_w = _zipf_weights(len(ENERGY))
    company_w = _zipf_weights(len(COMPANIES), 0.8)
    country_w = _zipf_weights(len(COUNTRIES), 0.8)
    articles: list[Article] = []
    for number in range(count):
        # dict, not set: a set's order follows string hashes, which change per process
        # (PYTHONHASHSEED), and the order picks the words below.
        countries = dict.fromkeys(
            rng.choices(COUNTRIES, cum_weights=country_w, k=rng.randint(1, 3))
        )
        companies = rng.choices(COMPANIES, cum_weights=company_w, k=rng.randint(0, 3))
        tail = [rng.choice(tails)] if rng.random() < 0.5 else []
        specials = list(countries) + companies + tail

        def sentence(length: int, specials: list[str] = specials) -> str:
            out: list[str] = []
            for _ in range(length):
                roll = rng.random()
                if roll < 0.06:
                    out.append(rng.choices(ENERGY, cum_weights=energy_w)[0])
                elif roll < 0.08 and specials:
                    out.append(rng.choice(specials))
                else:
                    out.append(rng.choices(COMMON, cum_weights=common_w)[0])
            return " ".join(out)

        title = sentence(rng.randint(7, 12)).capitalize() + " " + rng.choice(specials)
        body = ". ".join(sentence(rng.randint(12, 25)) for _ in range(words // 18))
        articles.append(
            Article(
                id=str(number),
                title=title,
                body=body,
                countries=frozenset(c[:2].upper() for c in countries),
            )
        )
    return Corpus(articles, tails)


def _quote(term: str) -> str:
    return f'"{term}"' if " " in term or "-" in term else term


PROFILES = ("broad", "selective")
"""Rule workloads: the reference's broad one, and selective watch rules (see the module)."""


Picker = Callable[[], str]


def _pickers(rng: random.Random) -> tuple[Picker, Picker, Picker]:
    """Return pickers of a quoted energy term (Zipf-weighted), country and company."""
    energy_w = _zipf_weights(len(ENERGY), 0.6)

    def energy() -> str:
        return _quote(rng.choices(ENERGY, cum_weights=energy_w)[0])

    def country() -> str:
        return _quote(rng.choice(COUNTRIES))

    def company() -> str:
        return _quote(rng.choice(COMPANIES))

    return energy, country, company


def make_rules(
    count: int, tails: list[str], *, seed: int = 2, profile: str = "broad"
) -> list[RuleSpec]:
    """Return ``count`` rules of ``profile``: the reference's six templates, or selective ones."""
    if profile == "selective":
        return _selective_rules(count, tails, seed)
    if profile != "broad":
        raise ValueError(f"unknown rule profile {profile!r}; expected one of {PROFILES}")
    rng = random.Random(seed)
    energy, country, company = _pickers(rng)

    def tail() -> str:
        return _quote(rng.choice(tails))

    rules: list[RuleSpec] = []
    for number in range(count):
        shape = rng.random()
        if shape < 0.30:
            query = f"({energy()} OR {energy()} OR {energy()}) AND ({country()} OR {country()})"
        elif shape < 0.50:
            query = f"{company()} AND ({energy()} OR {energy()}) AND NOT {energy()}"
        elif shape < 0.60:
            query = f"{_quote(rng.choice(ENERGY) + ' ' + rng.choice(COMMON))} AND {country()}"
        elif shape < 0.75:
            query = f"{company()} OR {company()}"
        elif shape < 0.90:
            query = f"{tail()} OR ({tail()} AND {energy()})"
        else:
            query = f"{energy()} NEAR/{rng.randint(5, 10)} ({country()} OR {company()})"
        scope = rng.random()
        if scope < 0.2:
            query = f"title:({query})"
        if rng.random() < 0.25:
            query = f"({query}) country:{rng.choice(COUNTRIES)[:2].upper()}"
        rules.append(RuleSpec(id=f"rule-{number:06d}", query=query))
    return rules


def _selective_rules(count: int, tails: list[str], seed: int) -> list[RuleSpec]:
    """Return ``count`` watch rules that each need something specific to co-occur."""
    rng = random.Random(seed)
    energy, country, company = _pickers(rng)

    rules: list[RuleSpec] = []
    for number in range(count):
        shape = rng.random()
        if shape < 0.30:
            query = _quote(rng.choice(tails))
        elif shape < 0.55:
            query = f"{company()} AND {country()} AND ({energy()} OR {energy()})"
        elif shape < 0.75:
            query = f"{country()} AND {country()} AND ({energy()} OR {energy()})"
        elif shape < 0.90:
            query = f"{company()} AND {company()}"
        else:
            query = f"{energy()} NEAR/{rng.randint(5, 10)} {company()}"
        if rng.random() < 0.2:
            query = f"title:({query})"
        rules.append(RuleSpec(id=f"rule-{number:06d}", query=query))
    return rules
