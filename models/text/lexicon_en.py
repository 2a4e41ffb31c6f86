"""English word tables the normalizer reads: months, weekdays, currencies, units, abbreviations
and the acronyms that are said as words; the rules are in `normalize_en`. One reading needs no
context and is shared by `normalize_en` and `say_as_en`: how a spelled letter is written for
the phonemizers (`letter`, `letters`)."""

from __future__ import annotations

from typing import Final

LETTER_WORDS: Final = {"A": "Eh"}
"""Letters a phonemizer misreads when written as a capital → how to write them. espeak-ng (the
Piper voices) and hibari's G2P both read a capital `A` followed by another word as the article
(/ɐ/: `A T M` is "uh T M", `nine A M` "nine uh M"), and `Eh` as the letter's name /eɪ/ in every
context (measured with en-us and en-gb-x-rp espeak-ng and both hibari lexicons: `Eh T M`,
`Eh one two`, `nine Eh M`, `C Eh nine`, `U S Eh`); every other capital reads as its name."""


def letter(char: str) -> str:
    """One letter as it is spelled aloud: its capital (`b` → `B`), or `LETTER_WORDS`' word
    (`a` → `Eh`); a letter whose capital is two letters (`ß`) stays as it is."""
    upper = char.upper()
    if len(upper) != 1:
        upper = char
    return LETTER_WORDS.get(upper, upper)


def letters(word: str) -> str:
    """A word spelled letter by letter (`ATM` → `Eh T M`)."""
    return " ".join(letter(char) for char in word)


MONTHS: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

MONTH_ABBREVIATIONS: Final = {
    "Jan": 1,
    "Feb": 2,
    "Mar": 3,
    "Apr": 4,
    "Jun": 6,
    "Jul": 7,
    "Aug": 8,
    "Sep": 9,
    "Sept": 9,
    "Oct": 10,
    "Nov": 11,
    "Dec": 12,
}

WEEKDAYS: Final = {
    "Mon": "Monday",
    "Tue": "Tuesday",
    "Tues": "Tuesday",
    "Wed": "Wednesday",
    "Thu": "Thursday",
    "Thur": "Thursday",
    "Thurs": "Thursday",
    "Fri": "Friday",
    "Sat": "Saturday",
    "Sun": "Sunday",
}

CURRENCIES: Final = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "", ""),
}
"""Symbol → major unit (one, many), minor unit (one, many); no minor unit for the yen."""

SCALE_SUFFIXES: Final = {
    "k": "thousand",
    "K": "thousand",
    "m": "million",
    "M": "million",
    "mm": "million",
    "MM": "million",
    "bn": "billion",
    "B": "billion",
    "thousand": "thousand",
    "million": "million",
    "billion": "billion",
    "trillion": "trillion",
}

UNITS: Final = {
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "mph": ("mile per hour", "miles per hour"),
    "m/s": ("meter per second", "meters per second"),
    "km": ("kilometer", "kilometers"),
    "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"),
    "m": ("meter", "meters"),
    "mi": ("mile", "miles"),
    "ft": ("foot", "feet"),
    "yd": ("yard", "yards"),
    "kg": ("kilogram", "kilograms"),
    "mg": ("milligram", "milligrams"),
    "g": ("gram", "grams"),
    "lb": ("pound", "pounds"),
    "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"),
    "mL": ("milliliter", "milliliters"),
    "ml": ("milliliter", "milliliters"),
    "L": ("liter", "liters"),
    "gal": ("gallon", "gallons"),
    "psi": ("pound per square inch", "pounds per square inch"),
    "sq ft": ("square foot", "square feet"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°C": ("degree Celsius", "degrees Celsius"),
    "ºF": ("degree Fahrenheit", "degrees Fahrenheit"),
    "ºC": ("degree Celsius", "degrees Celsius"),
    "° F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "° C": ("degree Celsius", "degrees Celsius"),
    "°": ("degree", "degrees"),
    "%": ("percent", "percent"),
    "KB": ("kilobyte", "kilobytes"),
    "kB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"),
    "TB": ("terabyte", "terabytes"),
    "Mbps": ("megabit per second", "megabits per second"),
    "Gbps": ("gigabit per second", "gigabits per second"),
    "GHz": ("gigahertz", "gigahertz"),
    "MHz": ("megahertz", "megahertz"),
    "kHz": ("kilohertz", "kilohertz"),
    "Hz": ("hertz", "hertz"),
    "kWh": ("kilowatt hour", "kilowatt hours"),
    "kW": ("kilowatt", "kilowatts"),
    "mAh": ("milliamp hour", "milliamp hours"),
    "hrs": ("hour", "hours"),
    "hr": ("hour", "hours"),
    "h": ("hour", "hours"),
    "mins": ("minute", "minutes"),
    "min": ("minute", "minutes"),
    "secs": ("second", "seconds"),
    "sec": ("second", "seconds"),
    "ms": ("millisecond", "milliseconds"),
}
"""Unit symbol after a number → its name (one, many)."""

ABBREVIATIONS: Final = {
    "Mr": "Mister",
    "Mrs": "Missus",
    "Ms": "Miz",
    "Prof": "Professor",
    "Ch": "Chapter",
    "Fig": "Figure",
    "Vol": "Volume",
    "Capt": "Captain",
    "Sgt": "Sergeant",
    "Lt": "Lieutenant",
    "Gov": "Governor",
    "Sen": "Senator",
    "Rev": "Reverend",
    "Mt": "Mount",
    "Ft": "Fort",
    "Jr": "Junior",
    "Sr": "Senior",
    "Inc": "Incorporated",
    "Corp": "Corporation",
    "Ltd": "Limited",
    "Co": "Company",
    "Bros": "Brothers",
    "Ave": "Avenue",
    "Blvd": "Boulevard",
    "Rd": "Road",
    "Ln": "Lane",
    "Hwy": "Highway",
    "Pkwy": "Parkway",
    "Apt": "Apartment",
    "Ste": "Suite",
    "Dept": "Department",
    "dept": "department",
    "approx": "approximately",
    "Approx": "Approximately",
    "vs": "versus",
    "etc": "et cetera",
    "appt": "appointment",
    "Appt": "Appointment",
    "ext": "extension",
    "Ext": "Extension",
    "tel": "telephone",
    "Tel": "Telephone",
    "hrs": "hours",
    "max": "maximum",
    "Max": "Maximum",
    "mo": "month",
    "yr": "year",
    "yrs": "years",
    "pkg": "package",
    "qty": "quantity",
    "Qty": "Quantity",
    "Rx": "prescription",
}
"""Abbreviations written with a period (the period is optional for the first group)."""

TITLES: Final = frozenset(
    [
        "Ch",
        "Fig",
        "Vol",
        "Mr",
        "Mrs",
        "Ms",
        "Prof",
        "Capt",
        "Sgt",
        "Lt",
        "Gov",
        "Sen",
        "Rev",
        "Mt",
        "Ft",
        "vs",
        "approx",
        "Approx",
        "ext",
        "Ext",
        "tel",
        "Tel",
    ]
)
"""Abbreviations that stand before what they qualify (a name, a number), so their period never
ends a sentence."""

NAME_SUFFIXES: Final = frozenset({"Jr", "Sr"})
"""Abbreviations after a name that end a sentence only at the end of the text or a line
(`Martin Luther King Jr. Blvd.` goes on)."""

PER_UNITS: Final = {
    "month": "month",
    "mo": "month",
    "year": "year",
    "yr": "year",
    "week": "week",
    "wk": "week",
    "day": "day",
    "night": "night",
    "hour": "hour",
    "hr": "hour",
    "h": "hour",
    "minute": "minute",
    "min": "minute",
    "person": "person",
    "item": "item",
    "unit": "unit",
    "user": "user",
    "lb": "pound",
    "kg": "kilogram",
    "oz": "ounce",
    "gal": "gallon",
    "mi": "mile",
    "km": "kilometer",
    "sq ft": "square foot",
    "kWh": "kilowatt hour",
    "GB": "gigabyte",
}
"""Words and unit symbols after `/` that make it `per` (`$12.99/month`, `$0.59/lb`)."""

TIME_ZONES: Final = {
    "ET": "Eastern Time",
    "CT": "Central Time",
    "MT": "Mountain Time",
    "PT": "Pacific Time",
}
"""US time zones written after a time (`9 PM ET`); said by name, as people say them. The
three-letter forms (`EST`) stay acronyms: they are commonly spelled aloud too."""

COMPASS: Final = {"N": "North", "S": "South", "E": "East", "W": "West"}
"""Compass points abbreviated before a numbered street (`12 W. 34th St.`)."""

LATIN: Final = {"e.g.": "for example", "i.e.": "that is", "a.k.a.": "also known as"}

SAID_ACRONYMS: Final = frozenset(
    [
        "NASA",
        "NATO",
        "UNESCO",
        "UNICEF",
        "NAFTA",
        "OPEC",
        "FEMA",
        "OSHA",
        "SCUBA",
        "LASER",
        "RADAR",
        "PIN",
        "ZIP",
        "SIM",
        "RAM",
        "ROM",
        "LAN",
        "WAN",
        "GIF",
        "COVID",
        "AIDS",
        "IKEA",
        "FIFA",
        "UEFA",
        "CAPTCHA",
        "WIFI",
        "ASAP",
        "NOAA",
    ]
)
"""Acronyms said as words; other short all-capital words are spelled letter by letter."""

SPELLED_ACRONYMS: Final = frozenset(["AARP", "USMC", "IEEE", "ESPN", "HTML", "HTTP", "USPS"])
"""Long acronyms that look sayable but are spelled."""

WORDS_IN_CAPITALS: Final = frozenset(
    [
        "A",
        "I",
        "THE",
        "AND",
        "FOR",
        "YOU",
        "NOW",
        "NEW",
        "OFF",
        "OUT",
        "ALL",
        "ARE",
        "BUY",
        "GET",
        "ONE",
        "TWO",
        "TEN",
        "YES",
        "NOT",
        "CAN",
        "HAS",
        "HIS",
        "HER",
        "OUR",
        "IS",
        "TO",
        "OF",
        "ON",
        "IN",
        "AT",
        "BY",
        "NO",
        "GO",
        "DO",
        "MY",
        "WE",
        "BE",
        "UP",
        "SO",
        "OR",
        "AN",
        "AS",
        "ME",
        "HE",
        "BIG",
        "HOT",
        "WIN",
        "SEE",
    ]
)
"""Short words typed in capitals for emphasis (`CALL NOW`), said rather than spelled."""

OKAY: Final = frozenset({"OK", "Ok"})

ROMAN_CONTEXT: Final = frozenset(
    [
        "Chapter",
        "Part",
        "Volume",
        "Vol",
        "Book",
        "Act",
        "Scene",
        "Section",
        "Phase",
        "Level",
        "Stage",
        "War",
        "Bowl",
        "Title",
        "Article",
        "Appendix",
        "Episode",
        "Round",
        "Tier",
        "Class",
        "Grade",
        "Schedule",
        "Unit",
        "Annex",
    ]
)
"""Words after which a roman numeral is a cardinal (`Chapter IV` → `Chapter four`)."""

REGNAL_NAMES: Final = frozenset(
    [
        "Henry",
        "Edward",
        "Elizabeth",
        "George",
        "Louis",
        "Charles",
        "William",
        "James",
        "Richard",
        "John",
        "Paul",
        "Benedict",
        "Pius",
        "Leo",
        "Gregory",
        "Mary",
        "Victoria",
        "Peter",
        "Catherine",
        "Frederick",
        "Philip",
        "Alexander",
        "Nicholas",
        "Ramesses",
        "Innocent",
        "Clement",
        "Francis",
        "Alfonso",
        "Ferdinand",
        "Gustav",
        "Harald",
        "Olaf",
        "Willem",
        "Carl",
        "Ivan",
        "Anne",
        "Stephen",
        "David",
        "Malcolm",
        "Robert",
        "Napoleon",
        "Urban",
        "Boniface",
        "Felix",
        "Sixtus",
        "Constantine",
    ]
)
"""Names after which a roman numeral is a regnal ordinal (`Henry VIII` → `Henry the eighth`)."""

CODE_WORDS: Final = {
    "pin": "PIN",
    "zip": "zip",
    "zip code": "zip code",
    "postcode": "postcode",
    "postal code": "postal code",
    "code": "code",
    "passcode": "passcode",
    "account": "account",
    "account number": "account number",
    "acct": "account",
    "acct.": "account",
    "order": "order",
    "order number": "order number",
    "confirmation": "confirmation",
    "confirmation number": "confirmation number",
    "confirmation code": "confirmation code",
    "reference": "reference",
    "reference number": "reference number",
    "ref": "reference",
    "ref.": "reference",
    "ticket": "ticket",
    "ticket number": "ticket number",
    "tracking": "tracking",
    "tracking number": "tracking number",
    "member id": "member I D",
    "id": "I D",
    "extension": "extension",
    "ext": "extension",
    "ext.": "extension",
    "flight": "flight",
    "ending in": "ending in",
    "ending": "ending",
    "rx": "prescription",
    "case": "case",
    "case number": "case number",
    "claim": "claim",
    "claim number": "claim number",
    "invoice": "invoice",
    "invoice number": "invoice number",
    "policy": "policy",
    "policy number": "policy number",
    "serial number": "serial number",
}
"""Words (lower case) after which a number is read digit by digit → how the word is said."""

KEYPAD_SYMBOLS: Final = {"+": "plus", "*": "star", "#": "pound"}
"""Phone keypad symbols by the names an IVR gives them."""

SYMBOL_NAMES: Final = {
    **KEYPAD_SYMBOLS,
    "-": "dash",
    "–": "dash",
    "—": "dash",
    "_": "underscore",
    ".": "dot",
    ",": "comma",
    ":": "colon",
    ";": "semicolon",
    "!": "exclamation mark",
    "?": "question mark",
    "'": "apostrophe",
    "’": "apostrophe",
    '"': "quote",
    "(": "open paren",
    ")": "close paren",
    "[": "open bracket",
    "]": "close bracket",
    "{": "open brace",
    "}": "close brace",
    "<": "less than",
    ">": "greater than",
    "/": "slash",
    "\\": "backslash",
    "|": "vertical bar",
    "@": "at",
    "&": "and",
    "%": "percent",
    "=": "equals",
    "^": "caret",
    "~": "tilde",
    "`": "backtick",
    "$": "dollar",
    "€": "euro",
    "£": "pound sign",
    "¥": "yen",
    "¢": "cent",
    "°": "degree",
}
"""Symbols a listener knows by a short name (say-as `characters` reads others by their Unicode
name; `normalize` names the ones it leaves after every other rule)."""

SPELLED_TLDS: Final = frozenset(["uk", "us", "io", "ai", "tv", "ca", "de", "fr", "eu"])
"""Country-code top-level domains, spelled (`co.uk` → `co dot U K`)."""

EMOJI_NAMES: Final = {
    "\u2764": "red heart",
    "\u2665": "heart suit",
    "\u2660": "spade suit",
    "\u2663": "club suit",
    "\u2666": "diamond suit",
    "\u2b50": "star",
    "\u2600": "sun",
    "\u260e": "telephone",
    "\u2705": "check mark button",
    "\u2714": "check mark",
    "\u2702": "scissors",
    "\u263a": "smiling face",
    "\u2639": "frowning face",
    "\u2b06": "up arrow",
    "\u2b07": "down arrow",
    "\u2b05": "left arrow",
    "\u27a1": "right arrow",
}
"""Pictographs whose Unicode name describes the old dingbat's glyph, not what a reader sees
(`HEAVY BLACK HEART` is drawn red, `WHITE MEDIUM STAR` yellow) → the name screen readers say
(CLDR's short name). Every other pictograph is read by its Unicode name."""
