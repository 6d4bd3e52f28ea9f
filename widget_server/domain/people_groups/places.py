"""States as the generator names them, their postal codes and a few cities each (a small committed table): a
member's location is "City, ST", the city picked from the seed; filters accept a code or a name."""

from __future__ import annotations

# state: (postal code, cities); cities are among each state's largest (public knowledge, no data licence)
STATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "alabama": ("AL", ("Birmingham", "Huntsville", "Mobile")),
    "alaska": ("AK", ("Anchorage", "Fairbanks", "Juneau")),
    "arizona": ("AZ", ("Phoenix", "Tucson", "Mesa")),
    "arkansas": ("AR", ("Little Rock", "Fayetteville", "Fort Smith")),
    "california": ("CA", ("Los Angeles", "San Diego", "San Jose", "Sacramento", "Fresno")),
    "colorado": ("CO", ("Denver", "Colorado Springs", "Aurora")),
    "connecticut": ("CT", ("Bridgeport", "New Haven", "Hartford")),
    "delaware": ("DE", ("Wilmington", "Dover", "Newark")),
    "district_of_columbia": ("DC", ("Washington",)),
    "florida": ("FL", ("Jacksonville", "Miami", "Tampa", "Orlando")),
    "georgia": ("GA", ("Atlanta", "Augusta", "Savannah")),
    "hawaii": ("HI", ("Honolulu", "Hilo", "Kailua")),
    "idaho": ("ID", ("Boise", "Meridian", "Nampa")),
    "illinois": ("IL", ("Chicago", "Aurora", "Naperville")),
    "indiana": ("IN", ("Indianapolis", "Fort Wayne", "Evansville")),
    "iowa": ("IA", ("Des Moines", "Cedar Rapids", "Davenport")),
    "kansas": ("KS", ("Wichita", "Overland Park", "Topeka")),
    "kentucky": ("KY", ("Louisville", "Lexington", "Bowling Green")),
    "louisiana": ("LA", ("New Orleans", "Baton Rouge", "Shreveport")),
    "maine": ("ME", ("Portland", "Lewiston", "Bangor")),
    "maryland": ("MD", ("Baltimore", "Frederick", "Rockville")),
    "massachusetts": ("MA", ("Boston", "Worcester", "Springfield")),
    "michigan": ("MI", ("Detroit", "Grand Rapids", "Lansing")),
    "minnesota": ("MN", ("Minneapolis", "Saint Paul", "Duluth")),
    "mississippi": ("MS", ("Jackson", "Gulfport", "Hattiesburg")),
    "missouri": ("MO", ("Kansas City", "St. Louis", "Springfield")),
    "montana": ("MT", ("Billings", "Missoula", "Bozeman")),
    "nebraska": ("NE", ("Omaha", "Lincoln", "Kearney")),
    "nevada": ("NV", ("Las Vegas", "Henderson", "Reno")),
    "new_hampshire": ("NH", ("Manchester", "Nashua", "Concord")),
    "new_jersey": ("NJ", ("Newark", "Jersey City", "Paterson")),
    "new_mexico": ("NM", ("Albuquerque", "Las Cruces", "Santa Fe")),
    "new_york": ("NY", ("New York", "Buffalo", "Rochester", "Albany")),
    "north_carolina": ("NC", ("Charlotte", "Raleigh", "Greensboro")),
    "north_dakota": ("ND", ("Fargo", "Bismarck", "Grand Forks")),
    "ohio": ("OH", ("Columbus", "Cleveland", "Cincinnati")),
    "oklahoma": ("OK", ("Oklahoma City", "Tulsa", "Norman")),
    "oregon": ("OR", ("Portland", "Eugene", "Salem")),
    "pennsylvania": ("PA", ("Philadelphia", "Pittsburgh", "Allentown")),
    "rhode_island": ("RI", ("Providence", "Warwick", "Cranston")),
    "south_carolina": ("SC", ("Charleston", "Columbia", "Greenville")),
    "south_dakota": ("SD", ("Sioux Falls", "Rapid City", "Aberdeen")),
    "tennessee": ("TN", ("Nashville", "Memphis", "Knoxville")),
    "texas": ("TX", ("Houston", "San Antonio", "Dallas", "Austin")),
    "utah": ("UT", ("Salt Lake City", "Provo", "Ogden")),
    "vermont": ("VT", ("Burlington", "Montpelier", "Rutland")),
    "virginia": ("VA", ("Virginia Beach", "Richmond", "Norfolk")),
    "washington": ("WA", ("Seattle", "Spokane", "Tacoma")),
    "west_virginia": ("WV", ("Charleston", "Huntington", "Morgantown")),
    "wisconsin": ("WI", ("Milwaukee", "Madison", "Green Bay")),
    "wyoming": ("WY", ("Cheyenne", "Casper", "Laramie")),
}
BY_CODE = {code: state for state, (code, _) in STATES.items()}


def state_named(value: str) -> str | None:
    """The generator's state for a postal code ("TX") or a name ("Texas", "new york", "new_york"); None if none."""
    text = value.strip()
    if text.upper() in BY_CODE:
        return BY_CODE[text.upper()]
    key = "_".join(text.lower().replace("-", " ").split())
    return key if key in STATES else None
