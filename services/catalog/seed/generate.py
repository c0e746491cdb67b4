#!/usr/bin/env python3
"""Generate deterministic catalog seed data for Shopstream.

Writes ``products.json`` next to this script. Standard library only; a fixed
random seed and stable JSON formatting (2-space indent, sorted keys, trailing
newline) make repeated runs byte-identical.

    python3 services/catalog/seed/generate.py
"""

import json
import os
import random
import re

SEED = 20240611
PRODUCT_COUNT = 600
OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "products.json")

REGIONS = ["eu", "us", "uk", "apac"]  # canonical order
HOME_REGION_WEIGHTS = [36, 34, 16, 14]  # how often each region is a product's first region
REGION_COUNT_WEIGHTS = {1: 10, 2: 32, 3: 36, 4: 22}  # most products sell in 2-4 regions
CURRENCY_BY_REGION = {"eu": "EUR", "us": "USD", "uk": "GBP", "apac": "USD"}
OUT_OF_STOCK_RATE = 0.05

CURRENCY_NOTE = (
    "All prices are integers in the currency's minor unit (cents for EUR/USD, "
    "pence for GBP). Each product uses a single currency, chosen from its first "
    "region: eu -> EUR, us -> USD, uk -> GBP, apac -> USD. Amounts in different "
    "currencies are not converted and should not be compared directly."
)

# ---------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------

BRANDS = [
    "Aurora", "Nordic", "Harbor", "Summit", "Ember", "Willow", "Atlas", "Cobalt",
    "Juniper", "Meridian", "Alder", "Halcyon", "Lumen", "Sable", "Tidewater",
    "Fjord", "Cascade", "Oakline", "Marlow", "Solstice", "Kestrel", "Larkspur",
    "Granite", "Wren", "Boreal", "Sierra", "Hearth", "Vesper", "Pioneer", "Birch",
]

# Colour name -> variant code. Codes are unique across the whole palette.
COLOR_CODES = {
    "black": "BLK", "white": "WHT", "navy": "NVY", "charcoal": "CHR",
    "oatmeal": "OAT", "olive": "OLV", "rust": "RST", "sage": "SGE", "sand": "SND",
    "forest": "FST", "burgundy": "BRG", "slate": "SLT", "cream": "CRM",
    "ochre": "OCH", "stone": "STN", "silver": "SLV", "graphite": "GPH",
    "midnight": "MID", "blue": "BLU", "red": "RED", "green": "GRN", "yellow": "YLW",
    "pink": "PNK", "natural": "NAT", "terracotta": "TER", "teal": "TEA",
    "orange": "ORG", "grey": "GRY", "camel": "CML", "indigo": "IND",
}

PALETTES = {
    "apparel": ["black", "navy", "charcoal", "oatmeal", "olive", "rust", "sage",
                "camel", "forest", "burgundy", "cream", "indigo"],
    "home": ["oatmeal", "sage", "terracotta", "cream", "charcoal", "ochre", "stone",
             "slate", "natural", "rust", "forest"],
    "kitchen": ["black", "white", "cream", "sage", "slate", "terracotta", "stone",
                "natural", "red", "navy"],
    "electronics": ["black", "silver", "graphite", "white", "midnight", "blue"],
    "audio": ["black", "silver", "white", "sand", "graphite", "forest", "midnight"],
    "outdoors": ["black", "olive", "forest", "orange", "slate", "sand", "teal",
                 "navy", "rust"],
    "toys": ["red", "yellow", "blue", "green", "natural", "pink", "teal", "orange"],
    "sports": ["black", "navy", "teal", "sage", "grey", "orange", "pink", "slate"],
    "stationery": ["black", "navy", "forest", "burgundy", "ochre", "sand", "grey",
                   "natural"],
}

SHOE_SIZES = {
    "EUR": ["EU 37", "EU 38", "EU 39", "EU 40", "EU 41", "EU 42", "EU 43",
            "EU 44", "EU 45", "EU 46"],
    "USD": ["US 6", "US 7", "US 8", "US 8.5", "US 9", "US 9.5", "US 10",
            "US 10.5", "US 11", "US 12"],
    "GBP": ["UK 4", "UK 5", "UK 6", "UK 7", "UK 8", "UK 9", "UK 10", "UK 11",
            "UK 12"],
}

SCENTS = {
    "fig & cedar": "FC", "sea salt": "SS", "amber": "AMB", "lavender": "LAV",
    "bergamot": "BRG", "tomato leaf": "TL", "smoked vanilla": "SV",
    "unscented": "UNS", "vetiver": "VET", "orange blossom": "OB", "mint": "MNT",
    "vanilla": "VAN", "rose": "ROS",
}

BOOK_FORMAT_CODES = {"paperback": "PB", "hardcover": "HC", "ebook": "EB",
                     "audiobook": "AB"}

# Attribute kinds: attribute key, default values, whether price rises with the
# value (ordered kinds) and how to build the variant code.
KINDS = {
    "size": ("size", ["XS", "S", "M", "L", "XL", "XXL"], False),
    "waist": ("waist", ["28", "30", "32", "34", "36", "38"], False),
    "sock": ("size", ["S/M", "L/XL"], False),
    "shoe": ("size", None, False),
    "color": ("color", None, False),
    "scent": ("scent", None, False),
    "format": ("format", ["paperback", "hardcover", "ebook", "audiobook"], False),
    "bed": ("size", ["single", "double", "queen", "king"], True),
    "dims": ("dimensions", None, True),
    "diameter": ("diameter", None, True),
    "length": ("length", None, True),
    "capacity": ("capacity", None, True),
    "volume": ("volume", None, True),
    "storage": ("storage", None, True),
    "screen": ("screen", None, True),
    "weight": ("weight", None, True),
    "pieces": ("pieces", None, True),
    "pack": ("pack", None, True),
    "sml": ("size", ["small", "medium", "large"], True),
    "paper": ("paper_size", ["A6", "A5", "A4"], True),
    "nib": ("nib", ["F", "M", "B"], False),
    "grip": ("grip", ["G2", "G3", "G4"], False),
    "switch": ("switch", ["linear", "tactile", "clicky"], False),
    "resistance": ("resistance", ["light", "medium", "heavy"], True),
    "layout": ("layout", ["weekly", "daily"], False),
    "fit": ("length", ["regular", "long"], True),
    "people": ("capacity", ["1-person", "2-person", "3-person"], True),
}


def item(name, kind, lo, hi, materials, values=None):
    return {"item": name, "kind": kind, "lo": lo, "hi": hi,
            "materials": materials, "values": values}


def only(text, *names):
    """A phrase that applies only to the listed item types or materials."""
    return (text, frozenset(names))


KNITS = ("Merino", "Cashmere", "Lambswool", "Alpaca", "Recycled Wool")
TOPS = ("Crew Sweater", "Cardigan", "Oxford Shirt", "Overshirt", "T-Shirt", "Hoodie",
        "Polo Shirt", "Henley", "Shirt Dress", "Chore Jacket")
LEATHERS = ("Leather", "Suede", "Nubuck", "Pebbled Leather", "Waterproof Suede", "Shearling")
TEXTILES = ("Throw Blanket", "Duvet Cover", "Cushion Cover", "Rug", "Bath Towel Set",
            "Curtain Panel")
COOKWARE = ("Dutch Oven", "Frying Pan", "Saucepan")
SKINCARE = ("Face Serum", "Moisturizer", "Cleanser", "Face Mask", "Hand Cream", "Body Oil")
SHELTER = ("Rain Jacket", "Tent", "Sleeping Bag", "Daypack", "Half-Zip")
WEIGHTS = ("Dumbbell Pair", "Kettlebell", "Resistance Bands")
SPORT_WEAR = ("Cycling Jersey", "Running Shorts")
PAPER = ("Dot Grid Notebook", "Planner", "Sketchbook")

# Per category: number of the 600 products, price bounds (minor units) that
# every SKU respects, the verbs used in descriptions, the item catalogue and
# phrase pools. A pool entry is either a plain string (fits every item) or
# only(text, names...) when it fits only some item types or materials.
CATEGORIES = {
    "apparel": {
        "count": 96, "bounds": (1200, 24900),
        "verbs": ["cut from", "made from", "crafted in"],
        "items": [
            item("Crew Sweater", "size", 5900, 16900, ["Merino", "Cashmere", "Lambswool", "Alpaca", "Cotton"]),
            item("Cardigan", "size", 6900, 17900, ["Merino", "Cashmere", "Lambswool", "Cotton"]),
            item("Oxford Shirt", "size", 3900, 8900, ["Cotton", "Organic Cotton"]),
            item("Overshirt", "size", 5900, 12900, ["Flannel", "Corduroy", "Wool-Blend", "Canvas"]),
            item("T-Shirt", "size", 1500, 3900, ["Cotton", "Organic Cotton", "Linen", "Merino"]),
            item("Hoodie", "size", 4500, 9900, ["Fleece", "Organic Cotton", "Loopback Cotton"]),
            item("Chinos", "waist", 4900, 9900, ["Cotton Twill", "Stretch Cotton", "Linen"]),
            item("Jeans", "waist", 5900, 14900, ["Selvedge Denim", "Stretch Denim", "Organic Denim"]),
            item("Beanie", "color", 1900, 3900, ["Merino", "Lambswool", "Cashmere", "Recycled Wool"]),
            item("Scarf", "color", 2500, 9900, ["Cashmere", "Merino", "Lambswool", "Silk", "Linen"]),
            item("Polo Shirt", "size", 2900, 6900, ["Pique Cotton", "Merino", "Organic Cotton"]),
            item("Henley", "size", 2900, 5900, ["Waffle-Knit Cotton", "Merino", "Cotton"]),
            item("Shirt Dress", "size", 5900, 15900, ["Linen", "Cotton Poplin", "Silk"]),
            item("Chore Jacket", "size", 8900, 19900, ["Canvas", "Moleskin", "Corduroy", "Waxed Cotton"]),
            item("Joggers", "size", 3900, 7900, ["Fleece", "Loopback Cotton", "Merino"]),
            item("Crew Socks", "sock", 1200, 2900, ["Merino", "Cotton", "Bamboo"]),
        ],
        "qualities": ["relaxed", "timeless", "everyday", "soft-handed", "hard-wearing",
                      "easygoing", "refined", only("lightweight", "Linen", "Silk", "T-Shirt")],
        "uses": ["the office and the weekend", "travel", "everyday wear",
                 "cool mornings and warm afternoons",
                 only("layering through the colder months", *KNITS + ("Flannel", "Fleece", "Corduroy", "Moleskin")),
                 only("long days on your feet", "Crew Socks", "Chinos", "Jeans", "Joggers")],
        "benefits": ["a soft, broken-in feel from the first wear",
                     "a drape that holds its shape",
                     only("breathability without bulk", "Linen", "Cotton", "Organic Cotton", "Bamboo", "Silk", "Merino"),
                     only("warmth that never feels heavy", *KNITS + ("Fleece", "Flannel"))],
        "features": [
            "Reinforced seams and a clean finish inside mean it lasts for years.",
            "The fabric is pre-washed to minimise shrinkage.",
            only("The fit is true to size with a slightly relaxed shoulder.", *TOPS),
            only("It sits comfortably on its own or under a jacket.", "Crew Sweater", "Cardigan",
                 "Oxford Shirt", "T-Shirt", "Hoodie", "Polo Shirt", "Henley"),
            only("A garment-dyed finish gives each piece a subtly lived-in colour.", "T-Shirt",
                 "Hoodie", "Overshirt", "Chore Jacket", "Chinos", "Henley", "Joggers"),
            only("Flat-lock seams keep it comfortable against the skin.", "T-Shirt", "Henley",
                 "Joggers", "Hoodie", "Polo Shirt"),
            only("Small details, like corozo buttons and a taped neck, set it apart.", "Oxford Shirt",
                 "Overshirt", "Cardigan", "Polo Shirt", "Henley", "Chore Jacket", "Shirt Dress"),
            only("It is cut with a little extra length in the body so it stays tucked.",
                 "Oxford Shirt", "T-Shirt", "Polo Shirt", "Henley"),
            only("A mid-rise waist and a gently tapered leg work with trainers or boots.",
                 "Chinos", "Jeans", "Joggers"),
            only("Cushioned soles and a seamless toe keep feet comfortable all day.", "Crew Socks"),
            only("It is long enough to wrap twice on the coldest days.", "Scarf"),
            only("A deep rib cuff can be worn turned up or slouched.", "Beanie"),
            only("Four patch pockets, including one deep enough for a notebook.", "Chore Jacket", "Overshirt"),
        ],
        "care": [
            "Wash inside out on a gentle cycle.",
            "Made in a family-run mill in Portugal.",
            "Ethically made in a certified factory.",
            only("Hand wash cold and lay flat to dry.", *KNITS),
            only("Dry clean or hand wash to keep it looking its best.", "Silk", "Cashmere", "Moleskin"),
            only("Machine wash at 30 degrees and line dry.", "Cotton", "Organic Cotton", "Linen",
                 "Pique Cotton", "Loopback Cotton", "Cotton Twill", "Stretch Cotton", "Bamboo",
                 "Waffle-Knit Cotton", "Cotton Poplin", "Flannel", "Fleece"),
        ],
        "tags": ["essentials", "new-arrival", "bestseller", "gift", "layering",
                 only("knitwear", "Crew Sweater", "Cardigan", "Beanie", "Scarf"),
                 only("sustainable", "Organic Cotton", "Organic Denim", "Recycled Wool", "Linen", "Bamboo"),
                 only("winter", *KNITS + ("Flannel", "Fleece", "Corduroy")),
                 only("summer", "Linen", "Silk", "T-Shirt", "Polo Shirt")],
    },
    "footwear": {
        "count": 48, "bounds": (2500, 24900),
        "verbs": ["made from", "crafted in", "built from", "finished in"],
        "items": [
            item("Sneakers", "shoe", 6900, 15900, ["Leather", "Canvas", "Knit", "Suede", "Recycled Mesh"]),
            item("Chelsea Boots", "shoe", 12900, 24900, ["Leather", "Suede", "Nubuck"]),
            item("Loafers", "shoe", 8900, 19900, ["Leather", "Suede"]),
            item("Running Shoes", "shoe", 8900, 17900, ["Recycled Mesh", "Knit", "Engineered Mesh"]),
            item("Hiking Boots", "shoe", 11900, 22900, ["Nubuck", "Leather", "Waterproof Suede"]),
            item("Slides", "shoe", 2500, 5900, ["Cork", "Leather", "EVA Foam"]),
            item("Derby Shoes", "shoe", 10900, 21900, ["Leather", "Pebbled Leather"]),
            item("Espadrilles", "shoe", 3900, 7900, ["Canvas", "Linen"]),
            item("Trail Runners", "shoe", 9900, 16900, ["Ripstop", "Engineered Mesh"]),
            item("Slippers", "shoe", 2900, 6900, ["Shearling", "Felted Wool", "Suede"]),
        ],
        "qualities": ["comfortable", "versatile", "durable", "classic",
                      only("lightweight", "Sneakers", "Running Shoes", "Trail Runners", "Slides", "Espadrilles"),
                      only("supportive", "Running Shoes", "Trail Runners", "Hiking Boots", "Sneakers")],
        "uses": ["all-day wear", "weekends away",
                 only("city walking", "Sneakers", "Chelsea Boots", "Loafers", "Derby Shoes"),
                 only("trails and towpaths", "Hiking Boots", "Trail Runners"),
                 only("the commute", "Sneakers", "Chelsea Boots", "Loafers", "Derby Shoes", "Running Shoes"),
                 only("smart-casual dressing", "Loafers", "Derby Shoes", "Chelsea Boots"),
                 only("easy summer days", "Slides", "Espadrilles"),
                 only("slow mornings at home", "Slippers"),
                 only("daily runs", "Running Shoes", "Trail Runners")],
        "benefits": ["comfort that lasts from morning to night",
                     only("a sole that grips on wet pavements", "Sneakers", "Running Shoes", "Chelsea Boots",
                          "Hiking Boots", "Trail Runners"),
                     only("a shape that moulds to your foot over time", *LEATHERS + ("Cork",)),
                     only("breathability on the warmest days", "Recycled Mesh", "Knit", "Engineered Mesh",
                          "Canvas", "Linen")],
        "features": [
            "They run true to size; go half a size up if between sizes.",
            only("A cushioned, removable insole supports the arch.", "Sneakers", "Running Shoes",
                 "Hiking Boots", "Trail Runners", "Chelsea Boots", "Derby Shoes"),
            only("The Goodyear-welted sole can be replaced when it wears down.", "Chelsea Boots",
                 "Derby Shoes", "Loafers", "Hiking Boots"),
            only("A grippy rubber outsole handles wet and uneven ground.", "Hiking Boots",
                 "Trail Runners", "Running Shoes", "Chelsea Boots"),
            only("Padded collars and a soft lining prevent rubbing.", "Sneakers", "Running Shoes",
                 "Hiking Boots", "Trail Runners"),
            only("A recycled-rubber outsole keeps weight down without losing grip.", "Sneakers",
                 "Running Shoes", "Slides", "Espadrilles"),
            only("Flexible construction means they need no breaking in.", "Loafers", "Espadrilles",
                 "Slippers", "Slides", "Sneakers"),
            only("A contoured footbed cradles the heel and arch.", "Slides", "Slippers"),
        ],
        "care": [
            "Let them dry naturally away from direct heat.",
            "Made in a small workshop in northern Portugal.",
            only("Condition the upper every few months to keep it supple.", *LEATHERS),
            only("Brush off dirt and treat with a protective spray.", "Suede", "Nubuck",
                 "Waterproof Suede", "Canvas", "Linen"),
            only("Machine washable at 30 degrees.", "Knit", "Recycled Mesh", "Engineered Mesh"),
        ],
        "tags": ["comfort", "everyday", "bestseller", "new-arrival",
                 only("waterproof", "Hiking Boots", "Waterproof Suede"),
                 only("handmade", "Loafers", "Derby Shoes", "Chelsea Boots", "Espadrilles"),
                 only("vegan", "Canvas", "Knit", "Recycled Mesh", "Engineered Mesh", "Ripstop", "Cork",
                      "EVA Foam", "Linen"),
                 only("running", "Running Shoes", "Trail Runners")],
    },
    "home": {
        "count": 66, "bounds": (1500, 59900),
        "verbs": ["made from", "crafted in", "finished in"],
        "items": [
            item("Throw Blanket", "color", 4900, 18900, ["Merino", "Cotton", "Alpaca", "Linen", "Mohair-Blend"]),
            item("Duvet Cover", "bed", 5900, 12900, ["Linen", "Percale Cotton", "Sateen Cotton", "Washed Cotton"]),
            item("Cushion Cover", "color", 1900, 4900, ["Linen", "Velvet", "Boucle", "Cotton"]),
            item("Table Lamp", "color", 4900, 18900, ["Ceramic", "Brass", "Oak", "Travertine"]),
            item("Rug", "dims", 8900, 29900, ["Jute", "Wool", "Cotton", "Sisal"],
                 ["120x170 cm", "160x230 cm", "200x300 cm"]),
            item("Scented Candle", "scent", 1800, 5400, ["Soy Wax", "Beeswax", "Coconut Wax"],
                 ["fig & cedar", "sea salt", "amber", "lavender", "bergamot", "tomato leaf",
                  "smoked vanilla", "orange blossom"]),
            item("Vase", "color", 2400, 9900, ["Ceramic", "Glass", "Stoneware", "Terracotta"]),
            item("Bath Towel Set", "color", 2900, 8900, ["Turkish Cotton", "Waffle Cotton", "Linen"]),
            item("Wall Mirror", "diameter", 6900, 19900, ["Oak", "Brass", "Rattan"],
                 ["50 cm", "70 cm", "90 cm"]),
            item("Storage Basket", "sml", 1900, 5900, ["Seagrass", "Rattan", "Felt", "Jute"]),
            item("Curtain Panel", "dims", 3900, 11900, ["Linen", "Velvet", "Cotton"],
                 ["140x230 cm", "140x260 cm", "140x300 cm"]),
        ],
        "qualities": ["calm", "handsome", "understated", "well-made",
                      only("tactile", *TEXTILES + ("Vase", "Storage Basket")),
                      only("generous", *TEXTILES)],
        "uses": ["living rooms and bedrooms", "a rented flat or a forever home",
                 "quiet evenings in",
                 only("slow Sunday mornings", "Throw Blanket", "Duvet Cover", "Scented Candle",
                      "Bath Towel Set", "Cushion Cover"),
                 only("entertaining at home", "Vase", "Scented Candle", "Table Lamp", "Cushion Cover")],
        "benefits": ["a quiet, considered presence in any room",
                     only("a warm, natural texture", *TEXTILES + ("Storage Basket", "Wall Mirror")),
                     only("softness that improves with every wash", "Throw Blanket", "Duvet Cover",
                          "Bath Towel Set", "Cushion Cover"),
                     only("a soft, even glow", "Table Lamp", "Scented Candle")],
        "features": [
            "The neutral palette works with almost any interior.",
            only("Every piece is finished by hand, so small variations are part of its character.",
                 "Vase", "Table Lamp", "Storage Basket", "Rug", "Wall Mirror"),
            only("It is sized generously to suit a wide range of spaces.", "Throw Blanket", "Rug",
                 "Bath Towel Set", "Curtain Panel", "Duvet Cover"),
            only("Natural fibres and dyes keep it free of harsh chemicals.", *TEXTILES),
            only("It is OEKO-TEX certified and made without harmful finishes.", "Duvet Cover",
                 "Bath Towel Set", "Throw Blanket", "Cushion Cover", "Curtain Panel"),
            only("Concealed fixings keep the lines clean on the wall.", "Wall Mirror"),
            only("A cotton wick gives a clean, even burn of around 50 hours.", "Scented Candle"),
            only("It takes a standard E27 bulb and has an inline dimmer.", "Table Lamp"),
            only("It is glazed inside, so it holds water for fresh stems.", "Ceramic", "Stoneware", "Terracotta"),
            only("Hidden ties keep the duvet in place overnight.", "Duvet Cover"),
            only("Sturdy handles make it easy to move from room to room.", "Storage Basket"),
        ],
        "care": [
            "Made in a small studio in Lisbon.",
            only("Spot clean or gently hand wash as needed.", "Cushion Cover", "Throw Blanket", "Rug"),
            only("Machine wash at 40 degrees and tumble dry low.", "Duvet Cover", "Bath Towel Set",
                 "Cotton", "Linen"),
            only("Woven on traditional looms in India.", "Rug", "Throw Blanket", "Cushion Cover",
                 "Bath Towel Set", "Storage Basket"),
            only("Keep out of prolonged direct sunlight to protect the colour.", *TEXTILES),
            only("Trim the wick to 5 mm before each burn.", "Scented Candle"),
            only("Dust with a soft, dry cloth.", "Table Lamp", "Wall Mirror", "Vase"),
        ],
        "tags": ["interiors", "gift", "new-arrival",
                 only("cosy", "Throw Blanket", "Cushion Cover", "Scented Candle", "Rug"),
                 only("handmade", "Vase", "Table Lamp", "Storage Basket", "Rug"),
                 only("natural", "Linen", "Jute", "Sisal", "Seagrass", "Rattan", "Wool", "Beeswax"),
                 only("bedroom", "Duvet Cover", "Throw Blanket", "Table Lamp", "Curtain Panel"),
                 only("living-room", "Rug", "Cushion Cover", "Vase", "Wall Mirror", "Curtain Panel"),
                 only("bathroom", "Bath Towel Set")],
    },
    "kitchen": {
        "count": 58, "bounds": (1500, 34900),
        "verbs": ["made from", "crafted in", "built from"],
        "items": [
            item("Chef's Knife", "length", 3900, 18900, ["Damascus Steel", "Carbon Steel", "Stainless Steel"],
                 ["18 cm", "20 cm", "23 cm"]),
            item("Dutch Oven", "capacity", 8900, 24900, ["Enameled Cast Iron", "Cast Iron"],
                 ["3.8 L", "5.2 L", "6.7 L"]),
            item("Frying Pan", "diameter", 2900, 11900, ["Carbon Steel", "Stainless Steel", "Cast Iron", "Ceramic Nonstick"],
                 ["20 cm", "24 cm", "28 cm", "32 cm"]),
            item("Saucepan", "capacity", 3900, 12900, ["Stainless Steel", "Copper", "Tri-Ply Steel"],
                 ["1.5 L", "2 L", "3 L"]),
            item("Cutting Board", "sml", 2400, 8900, ["Walnut", "Oak", "Maple", "Acacia", "Olive Wood"]),
            item("Pour-Over Coffee Set", "color", 2900, 7900, ["Borosilicate Glass", "Ceramic", "Stainless Steel"]),
            item("French Press", "capacity", 2400, 6900, ["Borosilicate Glass", "Stainless Steel"],
                 ["350 ml", "800 ml", "1 L"]),
            item("Mixing Bowl Set", "color", 1900, 5900, ["Stoneware", "Stainless Steel", "Glass"]),
            item("Dinner Plate Set", "color", 3400, 11900, ["Stoneware", "Porcelain", "Ceramic"]),
            item("Espresso Cups", "color", 1900, 4900, ["Porcelain", "Stoneware", "Double-Wall Glass"]),
            item("Kettle", "color", 3900, 14900, ["Stainless Steel", "Enameled Steel", "Copper"]),
            item("Utensil Set", "color", 1500, 4900, ["Olive Wood", "Beech", "Silicone"]),
        ],
        "qualities": ["everyday", "reliable", "versatile",
                      only("professional-grade", "Chef's Knife", *COOKWARE),
                      only("heavy-duty", *COOKWARE + ("Cutting Board",)),
                      only("well-balanced", "Chef's Knife", "Frying Pan", "Saucepan", "Kettle")],
        "uses": ["everyday cooking", "serious home cooks",
                 only("weeknight dinners", "Frying Pan", "Saucepan", "Chef's Knife", "Dinner Plate Set",
                      "Mixing Bowl Set", "Utensil Set", "Cutting Board"),
                 only("slow braises and Sunday roasts", "Dutch Oven"),
                 only("the first coffee of the day", "Pour-Over Coffee Set", "French Press",
                      "Espresso Cups", "Kettle"),
                 only("everyday prep", "Chef's Knife", "Cutting Board", "Mixing Bowl Set", "Utensil Set")],
        "benefits": ["years of dependable use",
                     only("even heat from edge to centre", *COOKWARE),
                     only("a balance that makes prep feel effortless", "Chef's Knife", "Utensil Set"),
                     only("a finish that only gets better with use", "Cast Iron", "Carbon Steel", "Copper",
                          "Walnut", "Oak", "Maple", "Acacia", "Olive Wood", "Beech"),
                     only("a table that feels considered", "Dinner Plate Set", "Espresso Cups")],
        "features": [
            "It comes with a lifetime warranty against manufacturing defects.",
            only("It works on gas, electric and induction hobs.", *COOKWARE),
            only("The handle stays cool and sits comfortably in the hand.", "Saucepan", "Frying Pan",
                 "Kettle"),
            only("It is dishwasher and microwave safe.", "Dinner Plate Set", "Espresso Cups",
                 "Mixing Bowl Set", "Porcelain", "Stoneware"),
            only("The edge is hand-finished to a precise 15-degree angle.", "Chef's Knife"),
            only("It is oven safe up to 260 degrees.", "Dutch Oven", "Cast Iron", "Carbon Steel"),
            only("It is free from PTFE and PFAS coatings.", *COOKWARE),
            only("A fine mesh filter keeps grounds out of the cup.", "French Press", "Pour-Over Coffee Set"),
            only("A juice groove around the edge catches runoff.", "Cutting Board"),
            only("It boils a full litre in under four minutes and switches off automatically.", "Kettle"),
            only("Nested sizes stack neatly to save cupboard space.", "Mixing Bowl Set"),
        ],
        "care": [
            "Designed in Copenhagen and made in Portugal.",
            only("Hand wash and dry straight away.", "Chef's Knife", "Cutting Board", "Utensil Set",
                 "Cast Iron", "Carbon Steel", "Copper"),
            only("Season lightly with oil after washing.", "Cast Iron", "Carbon Steel"),
            only("Oil the wood occasionally to keep it from drying out.", "Walnut", "Oak", "Maple",
                 "Acacia", "Olive Wood", "Beech"),
            only("Store in a knife block or on a magnetic strip.", "Chef's Knife"),
            only("Descale every few weeks in hard-water areas.", "Kettle"),
        ],
        "tags": ["gift", "bestseller",
                 only("cookware", *COOKWARE),
                 only("induction-ready", *COOKWARE),
                 only("tableware", "Dinner Plate Set", "Espresso Cups"),
                 only("coffee", "Pour-Over Coffee Set", "French Press", "Espresso Cups", "Kettle"),
                 only("dishwasher-safe", "Dinner Plate Set", "Espresso Cups", "Mixing Bowl Set"),
                 only("chef-favourite", "Chef's Knife", "Dutch Oven", "Frying Pan", "Cutting Board"),
                 only("knives", "Chef's Knife")],
    },
    "electronics": {
        "count": 50, "bounds": (1999, 149999),
        "verbs": ["built from", "made from", "finished in"],
        "items": [
            item("USB-C Hub", "color", 2999, 8999, ["Aluminum", "Recycled Aluminum"]),
            item("Laptop Stand", "color", 3999, 11999, ["Aluminum", "Walnut", "Steel"]),
            item("Wireless Charger", "color", 2499, 6999, ["Fabric", "Aluminum", "Silicone"]),
            item("Power Bank", "capacity", 2999, 8999, ["Aluminum", "Recycled Plastic"],
                 ["10000 mAh", "20000 mAh", "26800 mAh"]),
            item("Mechanical Keyboard", "switch", 7999, 24999, ["Aluminum", "PBT"]),
            item("4K Monitor", "screen", 29999, 89999, ["Aluminum", "Matte Steel"],
                 ["27 in", "32 in"]),
            item("Ultrabook", "storage", 79999, 149999, ["Aluminum", "Magnesium"],
                 ["256 GB", "512 GB", "1 TB"]),
            item("Tablet", "storage", 34999, 99999, ["Aluminum", "Recycled Aluminum"],
                 ["64 GB", "128 GB", "256 GB", "512 GB"]),
            item("E-Reader", "storage", 9999, 24999, ["Recycled Plastic", "Aluminum"],
                 ["16 GB", "32 GB"]),
            item("Smart Watch", "diameter", 19999, 59999, ["Titanium", "Aluminum", "Stainless Steel"],
                 ["41 mm", "45 mm"]),
            item("Webcam", "color", 4999, 17999, ["Aluminum", "Matte Polymer"]),
            item("Wireless Mouse", "color", 2999, 11999, ["Recycled Plastic", "Aluminum"]),
            item("External SSD", "storage", 6999, 29999, ["Aluminum", "Rugged Rubber"],
                 ["500 GB", "1 TB", "2 TB", "4 TB"]),
        ],
        "qualities": ["reliable", "well-made",
                      only("compact", "USB-C Hub", "Power Bank", "Webcam", "External SSD", "Wireless Charger"),
                      only("fast", "External SSD", "Ultrabook", "USB-C Hub", "Power Bank"),
                      only("slim", "Ultrabook", "Tablet", "E-Reader", "Wireless Charger", "Laptop Stand"),
                      only("travel-friendly", "Power Bank", "USB-C Hub", "E-Reader", "Ultrabook", "External SSD"),
                      only("powerful", "Ultrabook", "Tablet", "Power Bank")],
        "uses": ["a tidy home office", "everyday productivity", "hybrid working",
                 only("work on the move", "Ultrabook", "Tablet", "Power Bank", "USB-C Hub", "External SSD",
                      "E-Reader", "Wireless Mouse"),
                 only("creative work", "4K Monitor", "Tablet", "Ultrabook", "External SSD"),
                 only("video calls that look their best", "Webcam"),
                 only("long reading sessions", "E-Reader"),
                 only("training and everyday health tracking", "Smart Watch")],
        "benefits": ["a tough, low-profile build",
                     only("a premium feel and efficient heat dissipation", "Aluminum", "Recycled Aluminum",
                          "Magnesium", "Titanium"),
                     only("a clean look on any desk", "Laptop Stand", "USB-C Hub", "Wireless Charger",
                          "4K Monitor", "Mechanical Keyboard", "Wireless Mouse", "Webcam"),
                     only("a warm, natural finish", "Walnut", "Fabric")],
        "features": [
            "A two-year warranty is included as standard.",
            only("USB-C throughout means one cable for everything.", "USB-C Hub", "Power Bank",
                 "4K Monitor", "Ultrabook", "Tablet", "External SSD", "Webcam"),
            only("It pairs with up to three devices and switches between them instantly.",
                 "Mechanical Keyboard", "Wireless Mouse"),
            only("Firmware updates are delivered over the air.", "Ultrabook", "Tablet", "E-Reader",
                 "Smart Watch", "Mechanical Keyboard", "Webcam"),
            only("The battery lasts weeks on a single charge.", "Wireless Mouse", "Mechanical Keyboard",
                 "E-Reader"),
            only("It supports fast charging at up to 65 W.", "Power Bank", "USB-C Hub", "Ultrabook"),
            only("It works with macOS, Windows, Linux, iOS and Android.", "USB-C Hub", "External SSD",
                 "Wireless Mouse", "Mechanical Keyboard", "Webcam"),
            only("Height and angle adjust to keep your screen at eye level.", "Laptop Stand"),
            only("It charges phones and earbuds at up to 15 W through most cases.", "Wireless Charger"),
            only("A factory-calibrated panel covers 98 percent of DCI-P3.", "4K Monitor"),
            only("A glare-free 300 ppi display reads like paper, even in sunlight.", "E-Reader"),
            only("A built-in privacy shutter and dual microphones make calls simple.", "Webcam"),
            only("It tracks heart rate, sleep and GPS workouts, with up to five days of battery.",
                 "Smart Watch"),
            only("Hot-swappable switches and double-shot keycaps are built to last.", "Mechanical Keyboard"),
            only("A bright, colour-accurate display and all-day battery life.", "Ultrabook", "Tablet"),
            only("Read speeds of up to 2,000 MB/s move large projects in seconds.", "External SSD"),
        ],
        "care": [
            "Packaging is plastic-free and fully recyclable.",
            only("In the box: the device, a braided USB-C cable and a quick-start guide.", "USB-C Hub",
                 "Power Bank", "Mechanical Keyboard", "Wireless Mouse", "Webcam", "External SSD",
                 "E-Reader", "Wireless Charger"),
            only("Keep firmware up to date for the best performance.", "Ultrabook", "Tablet",
                 "Smart Watch", "E-Reader"),
            only("It folds flat to slip into a laptop bag.", "Laptop Stand"),
        ],
        "tags": ["bestseller", "new-arrival", "gift",
                 only("usb-c", "USB-C Hub", "Power Bank", "External SSD", "Ultrabook", "Tablet"),
                 only("wireless", "Wireless Charger", "Wireless Mouse", "Mechanical Keyboard"),
                 only("home-office", "Laptop Stand", "4K Monitor", "Webcam", "Mechanical Keyboard",
                      "USB-C Hub", "Wireless Mouse"),
                 only("portable", "Power Bank", "External SSD", "E-Reader", "Ultrabook", "Tablet"),
                 only("wearable", "Smart Watch")],
    },
    "audio": {
        "count": 34, "bounds": (2999, 89999),
        "verbs": ["built from", "finished in", "crafted in"],
        "items": [
            item("Over-Ear Headphones", "color", 7999, 44999, ["Aluminum", "Leather", "Recycled Plastic"]),
            item("Wireless Earbuds", "color", 4999, 27999, ["Recycled Plastic", "Ceramic"]),
            item("Bluetooth Speaker", "color", 3999, 29999, ["Fabric", "Aluminum", "Rugged Rubber"]),
            item("Bookshelf Speakers", "color", 19999, 89999, ["Walnut", "Oak", "Lacquered MDF"]),
            item("Turntable", "color", 19999, 79999, ["Walnut", "Acrylic", "Oak"]),
            item("Soundbar", "color", 19999, 89999, ["Fabric", "Aluminum"]),
            item("DAC Amplifier", "color", 9999, 39999, ["Aluminum", "Brushed Steel"]),
            item("Studio Microphone", "color", 7999, 29999, ["Steel", "Aluminum"]),
            item("Headphone Stand", "color", 2999, 6999, ["Walnut", "Aluminum", "Oak"]),
        ],
        "qualities": ["handsome", "precise",
                      only("warm-sounding", "Over-Ear Headphones", "Bookshelf Speakers", "Turntable",
                           "DAC Amplifier", "Bluetooth Speaker"),
                      only("detailed", "Over-Ear Headphones", "Wireless Earbuds", "Bookshelf Speakers",
                           "DAC Amplifier", "Studio Microphone"),
                      only("compact", "Wireless Earbuds", "Bluetooth Speaker", "DAC Amplifier", "Headphone Stand"),
                      only("room-filling", "Bookshelf Speakers", "Soundbar", "Bluetooth Speaker")],
        "uses": ["long listening sessions",
                 only("small apartments", "Bookshelf Speakers", "Soundbar", "Bluetooth Speaker", "Turntable"),
                 only("vinyl evenings", "Turntable", "Bookshelf Speakers"),
                 only("podcasting and calls", "Studio Microphone"),
                 only("music on the go", "Wireless Earbuds", "Over-Ear Headphones", "Bluetooth Speaker"),
                 only("movie nights", "Soundbar"),
                 only("a tidy desk setup", "Headphone Stand", "DAC Amplifier", "Studio Microphone")],
        "benefits": [only("rich bass without muddiness", "Over-Ear Headphones", "Wireless Earbuds",
                          "Bluetooth Speaker", "Bookshelf Speakers", "Soundbar"),
                     only("a clear, open soundstage", "Over-Ear Headphones", "Bookshelf Speakers",
                          "Soundbar", "DAC Amplifier"),
                     only("low distortion at any volume", "DAC Amplifier", "Bookshelf Speakers", "Turntable"),
                     only("a natural, broadcast-ready voice", "Studio Microphone"),
                     only("a handsome home for your headphones", "Headphone Stand"),
                     only("a warm, handsome finish", "Walnut", "Oak")],
        "features": [
            only("Active noise cancellation adapts to your surroundings.", "Over-Ear Headphones",
                 "Wireless Earbuds"),
            only("It supports aptX HD and AAC over Bluetooth 5.3.", "Over-Ear Headphones",
                 "Wireless Earbuds", "Bluetooth Speaker", "Soundbar"),
            only("Up to 30 hours of playback on a single charge.", "Over-Ear Headphones",
                 "Wireless Earbuds", "Bluetooth Speaker"),
            only("Drivers are tuned in-house and individually tested.", "Over-Ear Headphones",
                 "Wireless Earbuds", "Bluetooth Speaker", "Bookshelf Speakers", "Soundbar"),
            only("Multipoint pairing switches between phone and laptop seamlessly.",
                 "Over-Ear Headphones", "Wireless Earbuds"),
            only("A companion app offers a custom EQ and firmware updates.", "Over-Ear Headphones",
                 "Wireless Earbuds", "Bluetooth Speaker", "Soundbar"),
            only("A belt-driven platter and a pre-fitted cartridge get you playing in minutes.", "Turntable"),
            only("It decodes high-resolution files up to 32-bit/384 kHz.", "DAC Amplifier"),
            only("A cardioid pattern keeps voices clear and rejects room noise.", "Studio Microphone"),
            only("A weighted base and a soft leather saddle keep headphones secure.", "Headphone Stand"),
            only("Bi-wire terminals and a rear bass port deliver depth from a small cabinet.",
                 "Bookshelf Speakers"),
            only("HDMI eARC and Dolby Atmos support make setup a one-cable job.", "Soundbar"),
            only("It is IP67 rated, so rain and sand are no problem.", "Bluetooth Speaker"),
        ],
        "care": [
            "Covered by a two-year warranty.",
            "Wipe clean with a soft, dry cloth.",
            only("Includes a protective case and a USB-C charging cable.", "Over-Ear Headphones",
                 "Wireless Earbuds"),
            only("A dust cover and a 45 rpm adapter are included.", "Turntable"),
        ],
        "tags": ["bestseller", "gift", "new-arrival",
                 only("hi-fi", "Bookshelf Speakers", "Turntable", "DAC Amplifier", "Over-Ear Headphones"),
                 only("wireless", "Wireless Earbuds", "Over-Ear Headphones", "Bluetooth Speaker"),
                 only("bluetooth", "Wireless Earbuds", "Over-Ear Headphones", "Bluetooth Speaker", "Soundbar"),
                 only("noise-cancelling", "Wireless Earbuds", "Over-Ear Headphones"),
                 only("vinyl", "Turntable"),
                 only("home-cinema", "Soundbar"),
                 only("podcasting", "Studio Microphone")],
    },
    "books": {
        "count": 70, "bounds": (899, 4999),
        "tags": ["staff-pick", "book-club", "award-winner", "new-release",
                 "bestseller", "gift"],
    },
    "beauty": {
        "count": 46, "bounds": (600, 14900),
        "verbs": ["formulated with", "made with", "blended with"],
        "items": [
            item("Face Serum", "volume", 1900, 6900, ["Vitamin C", "Hyaluronic Acid", "Niacinamide", "Squalane"],
                 ["15 ml", "30 ml", "50 ml"]),
            item("Moisturizer", "volume", 1800, 5900, ["Ceramide", "Shea Butter", "Aloe"],
                 ["50 ml", "100 ml"]),
            item("Cleanser", "volume", 1200, 3400, ["Oat", "Green Tea", "Charcoal", "Rose"],
                 ["150 ml", "250 ml"]),
            item("Lip Balm", "scent", 600, 1500, ["Beeswax", "Shea Butter", "Cocoa Butter"],
                 ["unscented", "mint", "vanilla", "rose"]),
            item("Shampoo", "volume", 1200, 3200, ["Argan Oil", "Rosemary", "Coconut"],
                 ["250 ml", "500 ml"]),
            item("Hand Cream", "volume", 900, 2900, ["Shea Butter", "Lavender", "Almond"],
                 ["30 ml", "75 ml"]),
            item("Eau de Parfum", "volume", 4900, 14900, ["Vetiver", "Cedarwood", "Neroli", "Amber", "Fig"],
                 ["30 ml", "50 ml", "100 ml"]),
            item("Body Oil", "volume", 1900, 4900, ["Jojoba", "Rosehip", "Sweet Almond"],
                 ["100 ml", "200 ml"]),
            item("Face Mask", "volume", 1500, 3900, ["Kaolin Clay", "Honey", "Sea Kelp"],
                 ["50 ml", "100 ml"]),
            item("Soap Bar", "scent", 600, 1400, ["Olive Oil", "Goat Milk", "Oatmeal"],
                 ["unscented", "lavender", "sea salt", "orange blossom", "vetiver", "fig & cedar"]),
        ],
        "qualities": ["clean", "nourishing",
                      only("gentle", *SKINCARE + ("Shampoo", "Soap Bar", "Lip Balm")),
                      only("lightweight", "Face Serum", "Moisturizer", "Body Oil", "Hand Cream"),
                      only("fast-absorbing", "Face Serum", "Hand Cream", "Body Oil", "Moisturizer"),
                      only("restorative", *SKINCARE),
                      only("long-lasting", "Eau de Parfum"),
                      only("modern", "Eau de Parfum")],
        "uses": ["a few minutes of calm at the end of the day",
                 only("morning and evening routines", "Face Serum", "Moisturizer", "Cleanser"),
                 only("sensitive skin", *SKINCARE + ("Soap Bar",)),
                 only("dry winter skin", "Moisturizer", "Hand Cream", "Body Oil", "Lip Balm"),
                 only("everyday wear", "Eau de Parfum"),
                 only("daily washing", "Shampoo", "Soap Bar", "Cleanser")],
        "benefits": [only("visible radiance within weeks", "Face Serum", "Face Mask", "Body Oil"),
                     only("lasting hydration without a greasy feel", "Moisturizer", "Hand Cream",
                          "Face Serum", "Body Oil", "Lip Balm"),
                     only("a calmer, more even complexion", "Face Serum", "Cleanser", "Face Mask", "Moisturizer"),
                     only("a quietly distinctive signature scent", "Eau de Parfum"),
                     only("soft, glossy hair", "Shampoo"),
                     only("a rich, creamy lather", "Soap Bar", "Cleanser")],
        "features": [
            "It is vegan and cruelty-free.",
            only("It is fragrance-free and dermatologically tested.", "Face Serum", "Moisturizer",
                 "Cleanser", "Face Mask"),
            only("Suitable for all skin types, including sensitive skin.", *SKINCARE),
            only("The recyclable glass bottle protects the formula from light.", "Face Serum",
                 "Body Oil", "Eau de Parfum"),
            only("It is free from parabens, sulphates and silicones.", *SKINCARE + ("Shampoo",)),
            only("A little goes a long way: one pump is enough.", "Face Serum", "Moisturizer",
                 "Cleanser", "Body Oil"),
            only("It opens bright and settles into a warm, woody base.", "Eau de Parfum"),
            only("It comes in a plastic-free, refillable tin.", "Lip Balm"),
            only("Cold-processed and cured for six weeks.", "Soap Bar"),
            only("Gentle enough for daily use and colour-treated hair.", "Shampoo"),
        ],
        "care": [
            "Made in small batches in Provence.",
            "Store in a cool, dry place.",
            only("Patch test before first use.", *SKINCARE),
            only("Use within 12 months of opening.", *SKINCARE + ("Shampoo", "Lip Balm")),
        ],
        "tags": ["vegan", "cruelty-free", "gift", "bestseller", "self-care",
                 only("skincare", *SKINCARE + ("Lip Balm",)),
                 only("fragrance-free", "Face Serum", "Moisturizer", "Cleanser", "Face Mask"),
                 only("clean-beauty", *SKINCARE + ("Shampoo", "Soap Bar")),
                 only("fragrance", "Eau de Parfum"),
                 only("haircare", "Shampoo")],
    },
    "outdoors": {
        "count": 42, "bounds": (1500, 59900),
        "verbs": ["made from", "built from", "constructed from"],
        "items": [
            item("Daypack", "color", 4900, 14900, ["Ripstop Nylon", "Waxed Canvas", "Recycled Polyester"]),
            item("Rain Jacket", "size", 8900, 29900, ["3-Layer Shell", "Recycled Nylon", "Ripstop"]),
            item("Sleeping Bag", "fit", 8900, 39900, ["Down", "Synthetic Fill"]),
            item("Tent", "people", 14900, 59900, ["Ripstop Nylon", "Silnylon", "Polyester"]),
            item("Camp Stove", "color", 3900, 12900, ["Titanium", "Stainless Steel"]),
            item("Insulated Bottle", "volume", 1900, 4900, ["Stainless Steel", "Titanium"],
                 ["500 ml", "750 ml", "1 L"]),
            item("Headlamp", "color", 1900, 6900, ["Aluminum", "Recycled Plastic"]),
            item("Camp Chair", "color", 3900, 12900, ["Aluminum", "Ripstop"]),
            item("Trekking Poles", "length", 4900, 17900, ["Carbon Fiber", "Aluminum"],
                 ["110 cm", "120 cm", "130 cm"]),
            item("Half-Zip", "size", 5900, 14900, ["Grid Fleece", "Recycled Fleece"]),
        ],
        "qualities": ["trail-tested", "dependable", "rugged",
                      only("packable", "Rain Jacket", "Sleeping Bag", "Tent", "Camp Chair", "Half-Zip"),
                      only("weatherproof", "Rain Jacket", "Tent", "Daypack"),
                      only("lightweight", "Rain Jacket", "Sleeping Bag", "Tent", "Camp Stove",
                           "Trekking Poles", "Headlamp", "Camp Chair", "Half-Zip")],
        "uses": ["day hikes and overnighters", "car camping with friends",
                 only("fast-and-light trips", "Tent", "Sleeping Bag", "Camp Stove", "Trekking Poles",
                      "Headlamp", "Rain Jacket"),
                 only("wet shoulder seasons", "Rain Jacket", "Tent", "Daypack", "Half-Zip"),
                 only("alpine starts", "Headlamp", "Trekking Poles", "Camp Stove", "Rain Jacket",
                      "Half-Zip", "Insulated Bottle"),
                 only("the daily commute", "Daypack", "Insulated Bottle", "Rain Jacket")],
        "benefits": ["reliability when the weather turns",
                     only("serious protection at a low weight", "Rain Jacket", "Tent", "Sleeping Bag"),
                     only("a pack size that fits in any bag", "Rain Jacket", "Camp Chair", "Half-Zip",
                          "Sleeping Bag", "Headlamp"),
                     only("warmth without the bulk", "Sleeping Bag", "Half-Zip", "Down")],
        "features": [
            "It was tested over hundreds of kilometres in the Scottish Highlands.",
            only("Taped seams and a DWR finish keep the rain out.", "Rain Jacket", "Tent"),
            only("It packs down into its own stuff sack.", "Rain Jacket", "Sleeping Bag", "Tent",
                 "Camp Chair"),
            only("Reflective details add visibility at dusk.", "Rain Jacket", "Daypack", "Half-Zip"),
            only("Every panel is made from recycled or bluesign-approved materials.", *SHELTER),
            only("YKK zips and bar-tacked stress points are built to last.", *SHELTER),
            only("It boils a litre of water in under four minutes.", "Camp Stove"),
            only("Double-wall insulation keeps drinks cold for 24 hours or hot for 12.", "Insulated Bottle"),
            only("A 400-lumen beam, a red night mode and USB-C charging.", "Headlamp"),
            only("It folds down to the size of a water bottle.", "Camp Chair"),
            only("Flick-lock adjusters make on-trail changes quick and secure.", "Trekking Poles"),
            only("A padded laptop sleeve and a quick-access top pocket.", "Daypack"),
        ],
        "care": [
            "Backed by a lifetime repair programme.",
            only("Reproof with a wash-in treatment once a season.", "Rain Jacket", "Tent", "Daypack"),
            only("Store uncompressed and fully dry.", "Sleeping Bag", "Tent"),
            only("Hand wash with mild soap; not dishwasher safe.", "Insulated Bottle"),
        ],
        "tags": ["hiking", "camping", "bestseller", "new-arrival",
                 only("waterproof", "Rain Jacket", "Tent"),
                 only("ultralight", "Tent", "Sleeping Bag", "Camp Stove", "Trekking Poles", "Titanium",
                      "Carbon Fiber"),
                 only("recycled", "Recycled Nylon", "Recycled Polyester", "Recycled Fleece", "Recycled Plastic"),
                 only("trail", "Trekking Poles", "Headlamp", "Daypack")],
    },
    "toys": {
        "count": 30, "bounds": (999, 19999),
        "verbs": ["made from", "crafted in", "built from"],
        "items": [
            item("Building Blocks", "pieces", 1999, 8999, ["Beechwood", "Maple", "Recycled Plastic"],
                 ["60 pieces", "120 pieces", "250 pieces"]),
            item("Teddy Bear", "color", 1499, 3999, ["Organic Cotton", "Mohair", "Corduroy"]),
            item("Train Set", "pieces", 2999, 8999, ["Beechwood", "Maple"],
                 ["20 pieces", "45 pieces", "80 pieces"]),
            item("Jigsaw Puzzle", "pieces", 1499, 3499, ["Recycled Cardboard", "Birch Plywood"],
                 ["500 pieces", "1000 pieces"]),
            item("Stacking Rings", "color", 999, 2999, ["Beechwood", "Silicone"]),
            item("Play Kitchen", "color", 8999, 19999, ["Birch Plywood", "Pine"]),
            item("Kite", "color", 1999, 5999, ["Ripstop Nylon", "Recycled Polyester"]),
            item("Balance Bike", "color", 6999, 14999, ["Birch Plywood", "Aluminum"]),
            item("Marble Run", "pieces", 3999, 9999, ["Beechwood", "Maple"],
                 ["40 pieces", "80 pieces"]),
        ],
        "qualities": ["sturdy", "colourful", "heirloom-quality",
                      only("open-ended", "Building Blocks", "Train Set", "Marble Run", "Play Kitchen"),
                      only("imaginative", "Play Kitchen", "Train Set", "Teddy Bear", "Building Blocks"),
                      only("toddler-friendly", "Stacking Rings", "Teddy Bear", "Building Blocks")],
        "uses": ["rainy afternoons",
                 only("ages three and up", "Building Blocks", "Train Set", "Marble Run", "Play Kitchen",
                      "Balance Bike"),
                 only("independent play", "Building Blocks", "Stacking Rings", "Marble Run", "Train Set"),
                 only("family game nights", "Jigsaw Puzzle", "Marble Run"),
                 only("curious little builders", "Building Blocks", "Marble Run", "Train Set"),
                 only("bedtime cuddles", "Teddy Bear"),
                 only("breezy days at the beach", "Kite"),
                 only("first rides in the park", "Balance Bike")],
        "benefits": ["play that grows with your child",
                     only("endless ways to play", "Building Blocks", "Train Set", "Marble Run", "Play Kitchen"),
                     only("a satisfying weight in small hands", "Beechwood", "Maple"),
                     only("a soft, huggable feel", "Teddy Bear")],
        "features": [
            "It meets EN 71 and ASTM F963 toy safety standards.",
            only("Finished with non-toxic, water-based paints.", "Beechwood", "Maple", "Birch Plywood", "Pine"),
            only("Rounded edges make it safe for little hands.", "Beechwood", "Maple", "Birch Plywood",
                 "Pine", "Silicone"),
            only("It is compatible with most other wooden sets.", "Train Set", "Marble Run", "Beechwood"),
            only("Stuffed with recycled fibre and stitched to survive years of hugs.", "Teddy Bear"),
            only("Thick, snug-fitting pieces come with a poster of the finished image.", "Jigsaw Puzzle"),
            only("It launches in light winds and comes with 30 m of line.", "Kite"),
            only("An adjustable seat grows with riders from two to five years.", "Balance Bike"),
            only("Working knobs, a sink and a clicking hob make pretend cooking feel real.", "Play Kitchen"),
        ],
        "care": [
            only("Wipe clean with a damp cloth.", "Building Blocks", "Train Set", "Stacking Rings",
                 "Play Kitchen", "Marble Run", "Balance Bike"),
            only("Surface wash only.", "Teddy Bear"),
            only("Not suitable for children under 36 months: small parts.", "Building Blocks",
                 "Train Set", "Marble Run", "Jigsaw Puzzle"),
            only("Made in a family workshop in the Black Forest.", "Beechwood", "Maple", "Pine"),
            "Arrives in recyclable, plastic-free packaging.",
        ],
        "tags": ["kids", "gift", "bestseller",
                 only("wooden-toys", "Beechwood", "Maple", "Birch Plywood", "Pine"),
                 only("montessori", "Stacking Rings", "Building Blocks"),
                 only("educational", "Building Blocks", "Marble Run", "Jigsaw Puzzle"),
                 only("eco-friendly", "Recycled Plastic", "Recycled Cardboard", "Organic Cotton",
                      "Recycled Polyester"),
                 only("outdoor-play", "Kite", "Balance Bike")],
    },
    "sports": {
        "count": 36, "bounds": (900, 24900),
        "verbs": ["made from", "built from", "constructed from"],
        "items": [
            item("Yoga Mat", "color", 2900, 12900, ["Natural Rubber", "Cork", "TPE"]),
            item("Dumbbell Pair", "weight", 2900, 12900, ["Cast Iron", "Neoprene", "Hex Rubber"],
                 ["2 kg", "4 kg", "6 kg", "10 kg"]),
            item("Resistance Bands", "resistance", 1200, 3900, ["Latex", "Fabric"]),
            item("Jump Rope", "color", 1200, 3900, ["Steel Cable", "Leather", "PVC"]),
            item("Foam Roller", "length", 1900, 4900, ["EVA Foam", "Cork"],
                 ["30 cm", "45 cm", "90 cm"]),
            item("Tennis Racket", "grip", 7900, 24900, ["Graphite", "Carbon Fiber"]),
            item("Cycling Jersey", "size", 4900, 12900, ["Recycled Polyester", "Merino"]),
            item("Running Shorts", "size", 2900, 5900, ["Recycled Polyester", "Ripstop"]),
            item("Squeeze Bottle", "volume", 900, 2400, ["Tritan", "Recycled Plastic"],
                 ["500 ml", "750 ml"]),
            item("Kettlebell", "weight", 3900, 11900, ["Cast Iron", "Competition Steel"],
                 ["8 kg", "12 kg", "16 kg", "20 kg"]),
        ],
        "qualities": ["durable", "no-nonsense",
                      only("grippy", "Yoga Mat", "Dumbbell Pair", "Kettlebell", "Jump Rope"),
                      only("gym-ready", *WEIGHTS + ("Jump Rope", "Foam Roller")),
                      only("breathable", *SPORT_WEAR),
                      only("responsive", "Tennis Racket", "Jump Rope")],
        "uses": ["home workouts",
                 only("studio classes", "Yoga Mat", "Resistance Bands", "Foam Roller"),
                 only("interval training", *WEIGHTS + ("Jump Rope",)),
                 only("long rides", "Cycling Jersey", "Squeeze Bottle"),
                 only("recovery days", "Foam Roller", "Yoga Mat", "Resistance Bands"),
                 only("club matches and weekend hits", "Tennis Racket"),
                 only("tempo runs and race day", "Running Shorts", "Squeeze Bottle")],
        "benefits": ["years of hard training",
                     only("a confident grip even when things get sweaty", "Yoga Mat", "Dumbbell Pair",
                          "Kettlebell", "Jump Rope", "Tennis Racket"),
                     only("comfort through every rep", *WEIGHTS + ("Yoga Mat",)),
                     only("all-day comfort in the saddle", "Cycling Jersey"),
                     only("freedom of movement at any pace", "Running Shorts")],
        "features": [
            only("A non-slip surface stays put on any floor.", "Yoga Mat"),
            only("At 4 mm thick it balances cushioning and stability.", "Yoga Mat"),
            only("Sweat-wicking fabric dries in minutes.", *SPORT_WEAR),
            only("Flatlock seams prevent chafing on long sessions.", *SPORT_WEAR),
            only("It is tested to commercial gym standards.", *WEIGHTS),
            only("Colour-coded markings make it easy to grab the right one.", *WEIGHTS),
            only("Ball-bearing handles keep the rotation fast and smooth.", "Jump Rope"),
            only("A 100 sq in head offers a forgiving sweet spot.", "Tennis Racket"),
            only("A leak-proof valve opens with a quick squeeze.", "Squeeze Bottle"),
            only("A textured surface works deep into tight muscles.", "Foam Roller"),
            only("Three rear pockets carry everything for a long day out.", "Cycling Jersey"),
        ],
        "care": [
            "Covered by a two-year guarantee.",
            only("Wipe down after each session.", *WEIGHTS + ("Yoga Mat", "Foam Roller", "Jump Rope")),
            only("Store away from direct sunlight.", "Yoga Mat", "Resistance Bands"),
            only("Machine wash cold; do not tumble dry.", *SPORT_WEAR),
            only("Top-rack dishwasher safe.", "Squeeze Bottle"),
        ],
        "tags": ["fitness", "training", "bestseller", "new-arrival",
                 only("yoga", "Yoga Mat", "Foam Roller"),
                 only("running", "Running Shorts", "Squeeze Bottle"),
                 only("cycling", "Cycling Jersey"),
                 only("home-gym", *WEIGHTS + ("Jump Rope",)),
                 only("tennis", "Tennis Racket")],
    },
    "stationery": {
        "count": 24, "bounds": (399, 19900),
        "verbs": ["made from", "crafted in", "finished in"],
        "items": [
            item("Dot Grid Notebook", "paper", 1200, 3400, ["Linen", "Leather", "Recycled Paper"]),
            item("Fountain Pen", "nib", 2900, 19900, ["Brass", "Resin", "Aluminum", "Ebonite"]),
            item("Gel Pens", "pack", 499, 1999, ["Recycled Plastic", "Aluminum"],
                 ["3-pack", "6-pack", "12-pack"]),
            item("Desk Organizer", "color", 2400, 6900, ["Walnut", "Oak", "Felt", "Leather"]),
            item("Planner", "layout", 1900, 3900, ["Linen", "Vegan Leather"]),
            item("Pencil Set", "pack", 899, 2900, ["Cedar", "Graphite"],
                 ["6-pack", "12-pack", "24-pack"]),
            item("Sketchbook", "paper", 1400, 3900, ["Cotton Paper", "Kraft Paper"]),
            item("Desk Pad", "color", 2900, 7900, ["Felt", "Leather", "Cork"]),
        ],
        "qualities": ["well-crafted", "minimal", "thoughtful",
                      only("refillable", "Fountain Pen", "Gel Pens", "Planner"),
                      only("smooth-writing", "Fountain Pen", "Gel Pens", "Pencil Set"),
                      only("compact", *PAPER + ("Desk Organizer",))],
        "uses": [only("journaling and planning", "Dot Grid Notebook", "Planner", "Fountain Pen", "Gel Pens"),
                 only("sketching on the go", "Sketchbook", "Pencil Set"),
                 only("a well-organised desk", "Desk Organizer", "Desk Pad"),
                 only("daily note-taking", "Dot Grid Notebook", "Gel Pens", "Fountain Pen", "Pencil Set"),
                 "work and study"],
        "benefits": [only("a writing experience that makes you want to write more", "Fountain Pen",
                          "Gel Pens", "Dot Grid Notebook"),
                     only("order without clutter", "Desk Organizer", "Desk Pad", "Planner"),
                     only("paper that handles ink without bleeding", *PAPER),
                     only("a sharp, consistent line", "Pencil Set", "Gel Pens"),
                     "a quiet sense of craft"],
        "features": [
            only("The 100 gsm acid-free paper takes fountain pen ink without feathering.",
                 "Dot Grid Notebook", "Planner"),
            only("Heavyweight 160 gsm paper handles pencil, ink and light washes.", "Sketchbook"),
            only("A lay-flat binding opens fully on the desk.", *PAPER),
            only("It includes an elastic closure and a ribbon marker.", "Dot Grid Notebook", "Planner"),
            only("Refills are available separately.", "Fountain Pen", "Gel Pens", "Planner"),
            only("Numbered pages and an index keep things findable.", "Dot Grid Notebook"),
            only("A steel nib writes smoothly, with a converter and two cartridges included.", "Fountain Pen"),
            only("Compartments for pens, cards and a phone keep the desk clear.", "Desk Organizer"),
            only("Large enough for a keyboard and mouse, with a non-slip underside.", "Desk Pad"),
            only("Pre-sharpened, with grades from 2H to 6B.", "Pencil Set"),
            only("Quick-drying ink glides without smudging, even for left-handers.", "Gel Pens"),
        ],
        "care": [
            "Arrives in plastic-free packaging.",
            only("Printed and bound in Italy.", *PAPER),
            only("Made from FSC-certified materials.", *PAPER + ("Pencil Set", "Walnut", "Oak", "Cedar")),
            only("Supplied in a gift box with a care card.", "Fountain Pen", "Desk Organizer", "Desk Pad"),
        ],
        "tags": ["desk", "gift", "bestseller",
                 only("writing", "Fountain Pen", "Gel Pens", "Dot Grid Notebook", "Pencil Set"),
                 only("journaling", "Dot Grid Notebook", "Planner"),
                 only("back-to-school", "Gel Pens", "Pencil Set", "Dot Grid Notebook", "Planner"),
                 only("refillable", "Fountain Pen", "Gel Pens", "Planner"),
                 only("drawing", "Sketchbook", "Pencil Set")],
    },
}

# ---------------------------------------------------------------------------
# Books vocabulary
# ---------------------------------------------------------------------------

BOOK_GENRES = {
    "literary fiction": ("fiction", "literary novel", [
        "Spare, patient prose that rewards slow reading.",
        "It follows three generations of one family through a single, unforgettable summer.",
        "A quietly devastating story about memory, inheritance and the things we never say.",
    ]),
    "mystery": ("fiction", "mystery novel", [
        "A missing ledger, a flooded village and a detective with nothing left to lose.",
        "Every chapter ends on a question you will need answered.",
        "The twist lands late and changes everything that came before.",
    ]),
    "science fiction": ("fiction", "science fiction novel", [
        "A generation ship, a failing reactor and a crew that no longer trusts its captain.",
        "Big ideas delivered with a light touch and a lot of heart.",
        "It imagines a near future that feels uncomfortably close.",
    ]),
    "fantasy": ("fiction", "fantasy novel", [
        "An apprentice mapmaker discovers that the borders she draws become real.",
        "Richly built, with a magic system that has real costs.",
        "The opening volume of a trilogy that is already complete.",
    ]),
    "history": ("nonfiction", "narrative history", [
        "Drawing on newly opened archives, it overturns a century of received wisdom.",
        "Vivid, character-driven and meticulously sourced.",
        "It reads with the pace of a thriller.",
    ]),
    "popular science": ("nonfiction", "popular science book", [
        "Complex research made clear, surprising and genuinely fun.",
        "It will change how you think about the everyday world.",
        "Each chapter tackles a single question and answers it properly.",
    ]),
    "cookbook": ("nonfiction", "cookbook", [
        "More than a hundred recipes, each tested in an ordinary home kitchen.",
        "Generous, seasonal cooking with photography that makes you hungry.",
        "Most recipes come together in under forty minutes.",
    ]),
    "travel": ("nonfiction", "travel memoir", [
        "Part memoir, part guide, written on foot over two years.",
        "It captures the places between the famous sights.",
        "Includes hand-drawn maps and practical notes for each route.",
    ]),
    "design": ("nonfiction", "design book", [
        "Illustrated throughout with archival photography and drawings.",
        "A clear-eyed look at why some objects last and others do not.",
        "Essential reading for anyone who makes things.",
    ]),
    "business": ("nonfiction", "business book", [
        "Practical, evidence-based and refreshingly free of jargon.",
        "Built on interviews with more than two hundred founders and operators.",
        "Short chapters with concrete exercises at the end of each.",
    ]),
    "poetry": ("fiction", "poetry collection", [
        "Precise, tender poems about weather, work and the people we lose.",
        "A debut collection that announces a singular new voice.",
    ]),
    "children's": ("fiction", "children's picture book", [
        "Gorgeously illustrated and perfect for reading aloud at bedtime.",
        "A gentle story about courage, friendship and trying new things.",
    ]),
}

TITLE_ADJ = ["Salt", "Quiet", "Glass", "Last", "Winter", "Hollow", "Silver",
             "Northern", "Burning", "Paper", "Lantern", "Distant", "Sleeping",
             "Copper", "Drowned", "Golden", "Borrowed", "Small", "Lost", "Wild"]
TITLE_NOUN = ["Orchard", "Harbor", "Lighthouse", "Archive", "Cartographer",
              "Garden", "Ferry", "Comet", "Tide", "Atlas", "Cathedral",
              "Beekeeper", "Ledger", "Island", "River", "Observatory", "Cartwright",
              "Mountain", "Kingdom", "Almanac"]
TITLE_PLURAL = ["Small Fires", "Lost Rivers", "Borrowed Light", "Paper Boats",
                "Quiet Storms", "Distant Bells", "Open Windows", "Glass Birds"]
NONFICTION_TITLES = {
    "history": (["Deep Water", "The Long Road", "Iron and Ink", "Empire of Salt",
                 "The Map Room", "Signal Fires"],
                ["A History of the Atlantic Cable", "How the Railways Remade Europe",
                 "The Spice Trade and the Modern World", "Printing, Power and Revolution",
                 "Cartography in the Age of Sail"]),
    "popular science": (["Tiny Giants", "The Hidden Clock", "Brilliant Noise",
                         "Why Water Climbs", "The Patient Universe"],
                        ["How Microbes Shape Our World", "The Science of Sleep",
                         "What Physics Says About Everyday Life",
                         "Inside the Minds of Animals"]),
    "cookbook": (["Salt and Smoke", "The Winter Kitchen", "Small Plates",
                  "Bread and Butter", "Green Table", "Slow Pot"],
                 ["Recipes from the Atlantic Coast", "Cooking Through the Seasons",
                  "Vegetables First", "One-Pan Dinners for Every Night"]),
    "travel": (["Walking North", "Slow Train", "Edges of the Map", "Island Hours"],
               ["On Foot Across the Balkans", "A Year on the Coastal Railways",
                "Notes from the Outer Isles"]),
    "design": (["Form Follows Use", "Made to Last", "The Honest Chair", "Quiet Objects"],
               ["Notes on Everyday Design", "A Century of Scandinavian Furniture",
                "Typography for Humans"]),
    "business": (["Small Bets", "The Calm Company", "Signal Over Noise",
                  "Compound Work", "The Long Game"],
                 ["Building a Business That Lasts", "Lessons from Bootstrapped Founders",
                  "Making Better Decisions at Work"]),
}

AUTHOR_FIRST = ["Mara", "Tomas", "Ines", "Jonah", "Priya", "Elias", "Noor", "Felix",
                "Hana", "Rafael", "Clara", "Desmond", "Yuki", "Soren", "Amara",
                "Lucian", "Ada", "Kofi", "Greta", "Mateo"]
AUTHOR_LAST = ["Halloran", "Brandt", "Okoye", "Lindqvist", "Moreau", "Castellan",
               "Whitlock", "Tanaka", "Ferreira", "Novak", "Aldridge", "Haddad",
               "Marlowe", "Quist", "Renner", "Sato", "Vance", "Oyelaran", "Bexley",
               "Iversen"]

BOOK_FORMAT_PRICES = {  # (lo, hi) in minor units
    "paperback": (899, 1999),
    "hardcover": (1999, 3499),
    "ebook": (899, 1499),
    "audiobook": (1999, 3999),
}


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def slugify(text):
    text = text.lower().replace("'", "").replace("&", "and")
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def a_an(word):
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


def cap(text):
    return text[0].upper() + text[1:]


def join_words(words):
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " and " + words[-1]


def join_or(words):
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def abbrev(name, number):
    """SKU prefix: up to four initials of the name plus the product number."""
    main = name.split(":")[0]
    initials = "".join(w[0] for w in re.findall(r"[A-Za-z0-9]+", main.replace("'", "")))
    return "%s-%04d" % (initials[:4].upper(), number)


WORD_CODES = {
    "small": "S", "medium": "M", "large": "L", "single": "SGL", "double": "DBL",
    "queen": "QN", "king": "KG", "regular": "REG", "long": "LNG", "light": "LT",
    "heavy": "HV", "weekly": "WK", "daily": "DY", "linear": "LIN",
    "tactile": "TAC", "clicky": "CLK",
}


def variant_code(kind, value):
    if kind == "color":
        return COLOR_CODES[value]
    if kind == "scent":
        return SCENTS[value]
    if kind == "format":
        return BOOK_FORMAT_CODES[value]
    if kind == "shoe":  # "US 9.5" -> "US9H"
        system, size = value.split(" ")
        return system + size.replace(".5", "H")
    if value in WORD_CODES:
        return WORD_CODES[value]
    code = re.sub(r"[^A-Z0-9]", "", value.upper())  # "3.8 L" -> "38L", "L/XL" -> "LXL"
    code = code.replace("PERSON", "P").replace("PIECES", "PC").replace("PACK", "PK")
    if kind == "waist":
        code = "W" + code
    return code


def fitting(pool, it, material):
    """Entries of a phrase pool that suit this item type and material."""
    out = []
    for entry in pool:
        if isinstance(entry, tuple):
            text, names = entry
            if it["item"] in names or material in names:
                out.append(text)
        else:
            out.append(entry)
    return out


def pick(rng, pool, it, material):
    options = fitting(pool, it, material)
    if not options:
        raise ValueError("no phrase fits %s / %s" % (it["item"], material))
    return rng.choice(options)


def soft_lower(text):
    """Lower-case for running prose, keeping acronyms such as USB-C, 4K or PBT."""
    return " ".join(w if w.isupper() else w.lower() for w in text.split(" "))


def charm_price(rng, amount, lo, hi):
    """Round to a realistic shelf price: mostly .99, some .00, a few .49/.50."""
    amount = max(lo, min(hi, amount))
    units = int(round(amount / 100.0))
    if units >= 100:  # bigger tickets end in 9 or 5 whole units, e.g. 149.99
        units = int(round(units / 5.0)) * 5
    r = rng.random()
    if r < 0.74:
        price = units * 100 - 1
    elif r < 0.93:
        price = units * 100
    elif r < 0.97:
        price = units * 100 - 51  # x.49
    else:
        price = units * 100 - 50  # x.50
    # stay inside the category bounds while keeping a charm ending
    while price > hi:
        price -= 100
    while price < lo:
        price += 100
    return price


def pick_regions(rng):
    home = rng.choices(REGIONS, weights=HOME_REGION_WEIGHTS)[0]
    count = rng.choices(list(REGION_COUNT_WEIGHTS), weights=list(REGION_COUNT_WEIGHTS.values()))[0]
    others = [r for r in REGIONS if r != home]
    extra = set(rng.sample(others, count - 1))
    return [home] + [r for r in REGIONS if r in extra]


def pick_stock(rng):
    if rng.random() < OUT_OF_STOCK_RATE:
        return 0
    return int(round(rng.triangular(1, 500, 35)))


def pick_values(rng, values, ordered_run, count):
    """Pick `count` values: a contiguous run for ordered kinds, else a sample in list order."""
    count = min(count, len(values))
    if ordered_run:
        start = rng.randint(0, len(values) - count)
        return values[start:start + count]
    chosen = set(rng.sample(range(len(values)), count))
    return [v for i, v in enumerate(values) if i in chosen]


def variant_count(rng):
    return rng.choices([1, 2, 3, 4], weights=[18, 27, 30, 25])[0]


# ---------------------------------------------------------------------------
# Product builders
# ---------------------------------------------------------------------------

def describe_variants(kind, attr_key, values):
    n = len(values)
    if n == 1:
        return None
    if kind == "color":
        return "Choose from %s." % join_or(values)
    if kind in ("size", "shoe"):
        return "Available in sizes %s to %s." % (values[0], values[-1])
    if kind == "waist":
        return "Available in waist sizes %s to %s." % (values[0], values[-1])
    if kind == "scent":
        return "Choose from %s scents." % join_or(values)
    if kind in ("nib", "grip"):
        return "Offered with %s %s options." % (join_words(values), attr_key)
    if kind == "switch":
        return "Pick %s switches." % join_or(values)
    return "Offered in %s." % join_words(values)


def is_plural(item_name):
    last = item_name.split()[-1]
    return last.endswith("s") and not last.endswith("ss")


def pluralize(sentence):
    """Turn an "It ..." sentence into "They ..." for items named in the plural."""
    sentence = sentence.replace("mean it lasts", "mean they last")
    m = re.match(r"It (\w+)(.*)$", sentence)
    if not m:
        return sentence
    verb, rest = m.groups()
    irregular = {"is": "are", "was": "were", "has": "have"}
    if verb in irregular:
        verb = irregular[verb]
    elif verb.endswith(("ches", "shes", "sses", "xes")):
        verb = verb[:-2]
    elif verb.endswith("s"):
        verb = verb[:-1]
    return "They %s%s" % (verb, rest)


def build_description(rng, cat, brand, material, it, name, kind, attr_key, values):
    item_l = soft_lower(it["item"])
    mat_l = soft_lower(material)
    q = pick(rng, cat["qualities"], it, material)
    use = pick(rng, cat["uses"], it, material)
    verb = rng.choice(cat["verbs"])
    benefit = pick(rng, cat["benefits"], it, material)
    plural = is_plural(it["item"])
    a_q = q if plural else a_an(q)
    this, be, s_ = ("these", "are", "") if plural else ("this", "is", "s")
    intros = [
        "The %s %s %s %s %s %s." % (name, be, a_q, item_l, verb, mat_l),
        "%s %s %s %s, designed for %s." % (cap(a_q), item_l, verb, mat_l, use),
        "%s reworks the classic %s, %s %s, for %s." % (brand, item_l, verb, mat_l, use),
        "%s gives %s %s %s." % (cap(mat_l), this, item_l, benefit),
        "Meet the %s: %s, %s and made for %s." % (name, mat_l, q, use),
        "Designed in-house at %s, %s %s %s %s %s %s." % (brand, this, q, item_l, be, verb, mat_l),
        "Made for %s, the %s bring%s %s." % (use, name, s_, benefit),
    ]
    sentences = [rng.choice(intros)]
    n = rng.choices([1, 2, 3], weights=[14, 44, 42])[0]
    features = fitting(cat["features"], it, material)
    care = fitting(cat["care"], it, material)
    if plural:
        features = [pluralize(f) for f in features]
        care = [pluralize(c) for c in care]
    variant_sentence = describe_variants(kind, attr_key, values)
    if n >= 2 and features:
        sentences.append(rng.choice(features))
    if n >= 3 or (n == 2 and not features):
        if variant_sentence and (rng.random() < 0.55 or not care):
            sentences.append(variant_sentence)
        elif care:
            sentences.append(rng.choice(care))
    return " ".join(sentences)


def build_tags(rng, cat, it, material):
    """2-5 tags: the item type, the material and up to three merchandising tags."""
    tags = [slugify(it["item"])]
    if slugify(material) not in tags:
        tags.append(slugify(material))
    extras = fitting(cat["tags"], it, material)
    for tag in rng.sample(extras, min(len(extras), rng.randint(0, 3))):
        if tag not in tags:
            tags.append(tag)
    return tags[:5]


def build_skus(rng, prefix, cat, it, kind, values, all_values, currency):
    """One SKU per chosen value. Ordered kinds (capacity, storage, ...) are priced
    by the value's rank in the item's full range, so a 1 TB drive always costs
    more than the 500 GB one of the same product."""
    attr_key = KINDS[kind][0]
    scales = KINDS[kind][2]
    lo, hi = cat["bounds"]
    step = rng.uniform(0.15, 0.35) if scales else 0.0
    top = it["hi"] / ((1 + step) ** (len(all_values) - 1)) if scales else it["hi"]
    base = rng.uniform(it["lo"], max(it["lo"], top))
    single_price = charm_price(rng, base, lo, hi)
    skus = []
    for value in values:
        rank = all_values.index(value)
        price = charm_price(rng, base * (1 + step) ** rank, lo, hi) if scales else single_price
        skus.append({
            "sku": "%s-%s" % (prefix, variant_code(kind, value)),
            "attributes": {attr_key: value},
            "price": {"amount_minor": price, "currency": currency},
            "stock": pick_stock(rng),
        })
    return skus


def make_general(rng, number, category, used_names):
    cat = CATEGORIES[category]
    while True:
        it = rng.choice(cat["items"])
        brand = rng.choice(BRANDS)
        material = rng.choice(it["materials"])
        name = "%s %s %s" % (brand, material, it["item"])
        if name not in used_names:
            used_names.add(name)
            break
    slug = "%s-%04d" % (slugify(name), number)
    regions = pick_regions(rng)
    currency = CURRENCY_BY_REGION[regions[0]]
    kind = it["kind"]
    if kind == "color":
        all_values = PALETTES[category]
        values = pick_values(rng, all_values, False, variant_count(rng))
    elif kind == "shoe":
        all_values = SHOE_SIZES[currency]
        values = pick_values(rng, all_values, True, rng.choice([3, 4, 4]))
    else:
        all_values = it["values"] or KINDS[kind][1]
        ordered = KINDS[kind][2] or kind in ("size", "waist")
        values = pick_values(rng, all_values, ordered, variant_count(rng))
    skus = build_skus(rng, abbrev(name, number), cat, it, kind, values, all_values, currency)
    description = build_description(rng, cat, brand, material, it, name, kind,
                                     KINDS[kind][0], values)
    return {
        "slug": slug,
        "name": name,
        "description": description,
        "category": category,
        "tags": build_tags(rng, cat, it, material),
        "regions": regions,
        "image_key": "catalog/%s/%s.jpg" % (category, slug),
        "skus": skus,
    }


def book_title(rng, genre):
    if genre in NONFICTION_TITLES:
        mains, subs = NONFICTION_TITLES[genre]
        return "%s: %s" % (rng.choice(mains), rng.choice(subs))
    pattern = rng.randint(0, 3)
    if pattern == 0:
        return "The %s %s" % (rng.choice(TITLE_ADJ), rng.choice(TITLE_NOUN))
    if pattern == 1:
        return "A Season of %s" % rng.choice(TITLE_PLURAL)
    if pattern == 2:
        return "The %s's %s" % (rng.choice(TITLE_NOUN), rng.choice(["Daughter", "Promise", "Secret", "Apprentice", "Silence"]))
    return "%s %s" % (rng.choice(TITLE_ADJ), rng.choice(TITLE_NOUN))


def make_book(rng, number, used_names):
    cat = CATEGORIES["books"]
    genre = rng.choice(sorted(BOOK_GENRES))
    shelf, form, blurbs = BOOK_GENRES[genre]
    while True:
        title = book_title(rng, genre)
        if title not in used_names:
            used_names.add(title)
            break
    author = "%s %s" % (rng.choice(AUTHOR_FIRST), rng.choice(AUTHOR_LAST))
    slug = "%s-%04d" % (slugify(title.split(":")[0]), number)
    regions = pick_regions(rng)
    currency = CURRENCY_BY_REGION[regions[0]]

    if genre == "children's":
        formats = ["hardcover"] if rng.random() < 0.5 else ["paperback", "hardcover"]
    else:
        formats = pick_values(rng, KINDS["format"][1], False, variant_count(rng))
    lo, hi = cat["bounds"]
    position = rng.random()  # where in each format's range this title sits
    skus = []
    prefix = abbrev(title, number)
    for fmt in formats:
        flo, fhi = BOOK_FORMAT_PRICES[fmt]
        if genre in ("cookbook", "design") and fmt == "hardcover":
            flo, fhi = 2999, 4999
        price = charm_price(rng, flo + position * (fhi - flo), lo, hi)
        skus.append({
            "sku": "%s-%s" % (prefix, BOOK_FORMAT_CODES[fmt]),
            "attributes": {"format": fmt},
            "price": {"amount_minor": price, "currency": currency},
            "stock": pick_stock(rng),
        })

    ordinal = rng.choice(["debut", "second", "third", "long-awaited new", "acclaimed"])
    short = title.split(":")[0]
    intros = [
        "%s is %s by %s." % (short, a_an(form), author),
        "In this %s %s, %s %s." % (ordinal, form, author,
                                  rng.choice(["returns to familiar ground with fresh urgency",
                                              "takes on a subject few have dared to",
                                              "writes with rare warmth and precision",
                                              "blends research and storytelling"])),
        "%s is the %s %s from %s." % (short, ordinal, form, author),
    ]
    sentences = [rng.choice(intros)]
    n = rng.choices([1, 2, 3], weights=[10, 50, 40])[0]
    if n >= 2:
        sentences.append(rng.choice(blurbs))
    if n >= 3:
        extras = [
            "This edition includes a new afterword by the author.",
            "Shortlisted for a major prize on first publication.",
            "A favourite of independent booksellers.",
        ]
        if len(formats) > 1:
            extras.append("Available in %s." % join_words(formats))
        sentences.append(rng.choice(extras))

    tags = ["childrens-books" if genre == "children's" else slugify(genre), shelf]
    for tag in rng.sample(cat["tags"], rng.randint(0, 2)):
        tags.append(tag)

    return {
        "slug": slug,
        "name": title,
        "description": " ".join(sentences),
        "category": "books",
        "tags": tags,
        "regions": regions,
        "image_key": "catalog/books/%s.jpg" % slug,
        "skus": skus,
    }


def generate():
    rng = random.Random(SEED)
    plan = []
    for category in CATEGORIES:  # dict order is fixed
        plan.extend([category] * CATEGORIES[category]["count"])
    assert len(plan) == PRODUCT_COUNT, len(plan)
    rng.shuffle(plan)

    used_names = set()
    products = []
    for number, category in enumerate(plan, start=1):
        if category == "books":
            products.append(make_book(rng, number, used_names))
        else:
            products.append(make_general(rng, number, category, used_names))
    return {"version": 1, "currency_note": CURRENCY_NOTE, "products": products}


def main():
    data = generate()
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    with open(OUTPUT, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    print("wrote %d products to %s" % (len(data["products"]), OUTPUT))


if __name__ == "__main__":
    main()
