"""Toy arithmetic world: word problems in GSM8K's JSONL format, written from hand-made templates with splits
by template, so that a score on unseen templates measures reading a problem rather than recalling a template.

- `ARITHMETIC_TEMPLATES`: each `Template` has an `id`, a template `split` (train/dev/test, by hand), a
  `formula` over named variables (`"(a * b - c) / d"`), the variables' `ranges` (`"a=12..40 b=3..9"`) and the
  question `text` with a placeholder per variable (`{a}`) and optional `{name}`/`{name2}` (from
  `synthetic.NAMES`). The dev and test templates use other scenarios, other wordings and other operation
  structures than the train ones (no dev/test formula has the shape of a train formula, counting `+`/`*`
  operands as unordered), and many of them give the numbers in another order than the calculation.
- `arithmetic_records(n, seed, split, templates=None)`: `n` records `{"question", "answer", "template"}`.
  `answer` has one line per calculator step, `... a op b = <<a op b=v>>v.` (the formula's operations in
  post-order, so every EXPR is a plain `a op b` of integers), then `#### N` with N the last step's value.
  The GSM8K loader reads `question` and `answer` and ignores `template`.

Rules (checked when a question is drawn; a draw that breaks one is redrawn):
- the steps form one tree: every number in the question text is a leaf operand used exactly once (as a
  multiset), each step's result is used by exactly one later step except the last (the answer), and the
  text has no other numbers: no other digits, no number words or hidden constants ("twice", "half",
  "a dozen", "a week has 7 days");
- every value is a positive integer and all values of a question (its numbers and its results) differ, so a
  number names one place in the tree; division is exact (the divisor is picked among the divisors of the
  dividend, or the dividend is drawn as a multiple of the divisor);
- so that mental arithmetic fails: `*` has a factor >= 12 and the other >= 3; `+` has an operand >= 100 and
  the other >= 12; `-` has a minuend >= 100 and a subtrahend >= 12; `/` has a divisor >= 3 and a dividend
  >= 100 (and a quotient >= 2). A template's ranges choose where its story needs small numbers (days, people).
- 2 to 4 calculator steps per question.

Splits (`toysplits`): a question split draws its templates from `templates_of(split)` (train and test_seen:
the train templates; dev: the dev templates; test: the test templates) and keeps a question only when
`bucket(question) == bucket_of(split)`, so train shares no question text with dev, test or test_seen.
`templates=k` keeps the first k train templates (the ablation "accuracy vs number of training templates");
the list is ordered so that any prefix mixes operations and structures.

Everything is a pure function of the arguments: `random.Random(f"toy-arithmetic-{seed}-{split}")` draws, in
order, a template (uniformly), two names and the numbers; records are prefix-stable in `n`.
"""

from __future__ import annotations

import ast
import functools
import math
import random
import re
import string
from dataclasses import dataclass

from swirl.data.synthetic import NAMES
from swirl.data.toysplits import TEMPLATE_SPLITS, bucket, bucket_of, check_split, templates_of

__all__ = ["ARITHMETIC_TEMPLATES", "FORMAT", "Template", "arithmetic_record", "arithmetic_records"]

FORMAT = 1  # bump when the generated content changes, so written files are rebuilt
MAX_STEPS = 4
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_SAY = {"+": "Adding", "-": "Subtracting", "*": "Multiplying", "/": "Dividing"}
_NAME_FIELDS = {"name", "name2"}


@dataclass(frozen=True)
class Template:
    """One question pattern: `formula` over the variables of `ranges`, written out by `text`."""

    id: str
    split: str  # template split: train, dev or test
    formula: str  # e.g. "(a * b - c) / d": + - * / over single-use variables
    ranges: str  # e.g. "a=12..40 b=12..30 c=100..300 d=3..12": inclusive integer range of each variable
    text: str  # the question, with {a} ... for the variables and optional {name}, {name2}


T = Template
# fmt: off
ARITHMETIC_TEMPLATES: tuple[Template, ...] = (
    # ------------------------------------------------------------------------------------------ train
    T("bakery_trays_boxes", "train", "(a * b - c) / d", "a=12..40 b=12..30 c=100..300 d=3..12",
      "A bakery bakes {a} trays of {b} muffins. It sells {c} muffins in the morning and packs the rest into "
      "boxes of {d}. How many boxes does it pack?"),
    T("stationery_order_total", "train", "a * b + c * d", "a=12..48 b=3..15 c=12..60 d=3..9",
      "{name} buys {a} notebooks at ${b} each and {c} pens at ${d} each for a school. How many dollars does "
      "{name} spend in total?"),
    T("bike_savings_weeks", "train", "(a - b) / c", "a=300..900 b=100..280 c=3..30",
      "{name} wants a bike that costs ${a} and has already saved ${b}. Saving ${c} every week, how many "
      "weeks does {name} need to save the rest?"),
    T("warehouse_trucks_ship", "train", "a + b * c - d", "a=100..2000 b=12..40 c=12..60 d=100..900",
      "A warehouse holds {a} crates. Then {b} trucks arrive with {c} crates on each truck, and {d} crates "
      "are shipped out. How many crates are in the warehouse now?"),
    T("factory_bottles_days", "train", "a * b * c", "a=12..80 b=3..12 c=3..30",
      "A machine makes {a} bottles per hour and runs for {b} hours a day. How many bottles does it make in "
      "{c} days?"),
    T("library_donation_shelves", "train", "(a + b) / c", "a=100..900 b=100..600 c=3..20",
      "A library has {a} books and receives a donation of {b} more. The books are shared equally among {c} "
      "shelves. How many books go on each shelf?"),
    T("school_trip_buses", "train", "a * b / c", "a=3..12 b=12..35 c=20..60",
      "Each of the {a} classes at a school sends {b} students on a trip, and every bus carries {c} "
      "students. How many buses are needed if every bus is full?"),
    T("garden_bulb_bags", "train", "a * b / c * d", "a=12..40 b=12..30 c=5..25 d=3..15",
      "A gardener plants {a} rows of {b} tulip bulbs. The bulbs are sold in bags of {c}, and each bag costs "
      "${d}. How many dollars do the bulbs cost?"),
    T("raffle_after_printing", "train", "a * b - c", "a=100..400 b=3..10 c=100..300",
      "A school sells {a} raffle tickets at ${b} each, and printing the tickets cost ${c}. How much money, "
      "in dollars, does the raffle raise after paying for the printing?"),
    T("car_trip_fuel", "train", "a / b * c", "a=200..1200 b=8..20 c=120..200",
      "{name} drives {a} kilometres in a car that goes {b} kilometres on each litre of fuel. Fuel costs {c} "
      "cents per litre. How many cents does the fuel for the drive cost?"),
    T("basketball_season_points", "train", "a * b + c", "a=12..40 b=12..30 c=100..300",
      "A basketball team scores {a} points in each of its {b} league games and {c} points in its cup "
      "games. How many points does it score this season?"),
    T("phone_case_clearance", "train", "(a - b) * c", "a=100..600 b=12..90 c=12..40",
      "A shop had {a} phone cases and sold {b} of them at full price. The rest go in a clearance sale at "
      "${c} each. How many dollars does the clearance sale bring in?"),
    T("orchard_times_as_many", "train", "a * b - c", "a=12..80 b=3..9 c=12..90",
      "An orchard has {a} plum trees and {b} times as many pear trees. A storm knocks down {c} of the pear "
      "trees. How many pear trees are left standing?"),
    T("fun_run_charities", "train", "(a * b + c) / d", "a=12..200 b=12..40 c=100..900 d=3..9",
      "A fun run has {a} runners who each pay ${b} to enter, and a sponsor adds ${c}. The money is split "
      "evenly between {d} charities. How many dollars does each charity receive?"),
    T("post_office_postage", "train", "(a + b) * c", "a=100..400 b=100..400 c=3..15",
      "A post office sends {a} parcels in the morning and {b} in the afternoon. Postage is ${c} per "
      "parcel. How many dollars of postage does it collect?"),
    T("concert_hall_empty_seats", "train", "a - b * c", "a=300..1500 b=12..30 c=3..12",
      "A concert hall has {a} seats. Tickets are sold to {b} groups of {c} people each. How many seats stay "
      "empty?"),
    T("farm_feed_days", "train", "a / (b * c)", "a=1000..9000 b=12..40 c=3..15",
      "A farm has {a} kilograms of feed. It keeps {b} cows, and each cow eats {c} kilograms a day. For how "
      "many days does the feed last?"),
    T("print_shop_reams", "train", "a * b * c / d", "a=12..40 b=12..30 c=3..8 d=100..500",
      "A print shop makes booklets of {b} pages, printing {a} booklets for each of {c} schools. Paper comes "
      "in reams of {d} sheets, and every page takes its own sheet. How many reams does the shop use?"),
    T("wages_after_rent", "train", "a * b * c - d", "a=12..40 b=12..30 c=3..12 d=100..2000",
      "{name} works {a} hours a week at ${b} an hour for {c} weeks and then pays ${d} in rent. How many "
      "dollars does {name} keep?"),
    T("earnings_minus_lunches", "train", "a * b - c * d", "a=12..40 b=12..40 c=3..12 d=12..30",
      "{name} earns ${a} an hour for {b} hours of work and spends ${c} a day on lunch for {d} days. How "
      "many dollars are left over?"),
    T("train_passengers_stations", "train", "a - b + c - d", "a=300..900 b=100..250 c=12..200 d=12..200",
      "A train leaves the city with {a} passengers. At the next station {b} passengers get off and {c} get "
      "on. Later, {d} more get off. How many passengers are on the train now?"),
    T("sticker_share_trade", "train", "a / b - c", "a=500..5000 b=3..9 c=12..60",
      "{name} shares {a} stickers equally among {b} friends. Each friend then trades away {c} stickers. "
      "How many stickers does each friend have left?"),
    T("zoo_meat_days", "train", "(a * b + c * d) * e", "a=5..9 b=12..20 c=3..8 d=12..20 e=12..30",
      "A zoo feeds each of its {a} lions {b} kilograms of meat a day and each of its {c} tigers {d} "
      "kilograms a day. How many kilograms of meat does it need for {e} days?"),
    T("lemonade_profit", "train", "(a + b) * (c - d)", "a=100..300 b=100..300 c=120..300 d=12..100",
      "A lemonade stall sells {a} cups in the morning and {b} cups in the afternoon. Each cup sells for {c} "
      "cents and costs {d} cents to make. How many cents of profit does the stall make?"),
    T("toy_factory_pallets", "train", "a * b / c / d", "a=12..99 b=12..24 c=3..12 d=3..12",
      "A factory makes {a} toy cars an hour for {b} hours. The cars are packed into boxes of {c}, and the "
      "boxes are stacked on pallets of {d}. How many pallets are filled?"),
    T("savings_account_months", "train", "a + b * c", "a=100..900 b=12..90 c=12..36",
      "{name} has ${a} in a savings account and adds ${b} every month for {c} months. How many dollars are "
      "in the account then?"),
    T("market_garden_carrots", "train", "(a - b) / c * d", "a=300..2000 b=12..200 c=3..12 d=3..9",
      "A market garden picks {a} carrots. {b} carrots are too small to sell, and the rest are tied in "
      "bunches of {c}. Each bunch sells for ${d}. How many dollars do the bunches bring in?"),
    T("farmer_market_costs", "train", "a * b - c - d", "a=12..60 b=12..40 c=100..300 d=12..99",
      "A farmer sells {a} crates of tomatoes at ${b} a crate. Fuel for the trip costs ${c} and the market "
      "stall costs ${d}. How many dollars does the farmer have after paying for fuel and the stall?"),
    T("school_pencils_classrooms", "train", "(a * b + c * d) / e",
      "a=12..40 b=12..24 c=12..40 d=3..10 e=3..12",
      "A school buys {a} packs of {b} pencils and {c} boxes of {d} pencils. The pencils are shared equally "
      "among {e} classrooms. How many pencils does each classroom get?"),
    T("school_fair_cupcakes", "train", "(a + b) * c / d", "a=100..300 b=100..300 c=12..90 d=3..12",
      "Students sell {a} cupcakes on Friday and {b} on Saturday at {c} cents each. The money is shared "
      "equally among {d} clubs. How many cents does each club get?"),
    T("depot_parcels_lorries", "train", "(a + b * c - d) / e",
      "a=100..900 b=12..30 c=12..40 d=100..400 e=3..12",
      "A depot has {a} parcels. {b} vans bring {c} parcels each, and {d} parcels are returned to their "
      "senders. The rest are loaded equally onto {e} lorries. How many parcels does each lorry carry?"),
    T("football_match_fees", "train", "a * (b + c)", "a=12..30 b=100..300 c=12..90",
      "A football club pays each of its {a} players a match fee of ${b} and a travel allowance of ${c}. "
      "How many dollars does the club pay its players?"),
    T("library_unpacking_minutes", "train", "a / b * c + d", "a=100..900 b=3..12 c=12..30 d=100..400",
      "A library receives {a} new books in boxes of {b}. Unpacking a box takes {c} minutes, and shelving "
      "the books takes another {d} minutes. How many minutes does the whole job take?"),
    T("dairy_milk_day", "train", "a * b + c * d", "a=12..90 b=12..30 c=12..60 d=3..6",
      "Each of the {a} cows on a dairy farm gives {b} litres of milk a day, and each of its {c} goats gives "
      "{d} litres. How many litres of milk does the farm get in a day?"),
    T("yoyo_factory_sets", "train", "(a * b - c) / d", "a=12..80 b=3..12 c=12..99 d=3..12",
      "A toy factory runs {b} machines that each make {a} yo-yos per shift. Quality control throws away "
      "{c} yo-yos, and the good yo-yos are boxed in sets of {d}. How many boxes are filled?"),
    T("bookshop_copies_left", "train", "a - b * c", "a=500..3000 b=12..40 c=12..40",
      "A bookshop had {a} copies of a new novel. It sold {c} copies a day for {b} days. How many copies are "
      "still on the shelves?"),
    T("hockey_ticket_revenue", "train", "(a + b) * c", "a=100..900 b=100..900 c=12..40",
      "A hockey arena sells {a} tickets for the opening match and {b} for the final match. Every ticket "
      "costs ${c}. How many dollars does the arena take in tickets?"),
    T("holiday_money_left", "train", "a - b - c * d", "a=1000..4000 b=100..800 c=30..150 d=3..14",
      "{name} takes ${a} on holiday, spends ${b} on the flight and then ${c} a night on a hotel for {d} "
      "nights. How many dollars does {name} have left?"),
    T("publisher_pages_cut", "train", "(a - b) * c", "a=100..400 b=12..60 c=12..90",
      "A publisher prints {c} copies of a book of {a} pages, but after editing {b} pages are cut from every "
      "copy. How many pages are printed in all?"),
    T("cousins_share_savings", "train", "(a + b - c) / d", "a=100..600 b=100..600 c=100..300 d=3..9",
      "{name} has ${a} and {name2} has ${b}. Together they buy a tent for ${c} and split what is left "
      "evenly among {d} cousins. How many dollars does each cousin get?"),
    T("hen_egg_cartons", "train", "a * b / c", "a=12..90 b=12..30 c=6..30",
      "A farm has {a} hens that each lay {b} eggs a month. The eggs are packed into cartons of {c}. How "
      "many cartons are filled each month?"),
    T("swim_squad_metres", "train", "a * b * c + d", "a=3..6 b=12..40 c=100..400 d=100..800",
      "A swimming squad trains on {a} days a week for {b} weeks and swims {c} metres in every session. At "
      "the end it swims {d} metres in a gala. How many metres does the squad swim altogether?"),
    T("kite_shop_times_as_many", "train", "a * b + c", "a=12..60 b=3..8 c=12..90",
      "A toy shop sold {a} kites in spring. In summer it sold {b} times as many kites, and in autumn it "
      "sold {c} kites. How many kites did it sell in summer and autumn?"),
    T("food_bank_hampers", "train", "(a - b) / c", "a=500..3000 b=100..400 c=12..40",
      "A food bank receives {a} cans of soup and gives away {b} cans on Monday. The remaining cans are "
      "split evenly into {c} hampers. How many cans go in each hamper?"),
    T("sprinkler_water", "train", "a * b * c", "a=12..40 b=12..60 c=3..30",
      "A garden sprinkler uses {a} litres of water per minute. It runs for {b} minutes each evening. How "
      "many litres of water does it use over {c} evenings?"),
    # -------------------------------------------------------------------------------------------- dev
    T("aquarium_takings", "dev", "(a + b) * c - d", "a=100..400 b=100..400 c=12..30 d=100..2000",
      "At an aquarium, {a} visitors came before noon and {b} after noon, and each visitor paid ${c}. "
      "Cleaning the tanks used up ${d} of that money. What sum, in dollars, remained?"),
    T("recycling_bales", "dev", "(a + b + c) / d", "a=100..900 b=100..900 c=100..900 d=3..20",
      "A recycling depot collected {a} kilograms of paper on Monday, {b} on Tuesday and {c} on Wednesday. "
      "It presses the paper into bales weighing {d} kilograms apiece. What number of bales comes out?"),
    T("fishing_daily_catch", "dev", "a * b / (c + d)", "a=100..400 b=12..30 c=100..150 d=12..60",
      "Over a season a fishing boat landed {a} crates holding {b} kilograms of fish apiece. It sailed on "
      "{c} days in spring and {d} days in autumn. On average, what weight of fish in kilograms did it land "
      "on a sailing day?"),
    T("beekeeper_empty_jars", "dev", "a - b / c", "a=200..900 b=2000..9000 c=100..300",
      "{name} the beekeeper fills jars that take {c} grams of honey apiece, using all {b} grams from this "
      "harvest. {name} had {a} empty jars beforehand. How many of them are still empty?"),
    T("campsite_season_income", "dev", "(a * b - c) * d", "a=12..60 b=12..60 c=12..99 d=12..40",
      "A campsite rents out {a} pitches for {b} nights apiece over the summer. Staff use {c} of these "
      "pitch-nights without paying, and every paid pitch-night brings in ${d}. What is the summer's income "
      "in dollars?"),
    T("museum_tours_stayed", "dev", "a * b + c * d - e", "a=12..30 b=12..25 c=3..12 d=12..35 e=12..99",
      "A museum runs {a} guided tours for {b} visitors apiece and {c} school tours for {d} pupils apiece. "
      "Of all these people, {e} left before the end. Find how many stayed for a whole tour."),
    T("bike_rental_repairs", "dev", "(a - b) * c - d", "a=100..400 b=12..90 c=12..60 d=100..900",
      "A rental firm owns {a} bicycles, but {b} of them sit in the workshop all summer. Every bicycle on "
      "the road earns ${c} across the summer, and fixing the broken bicycles costs ${d}. What is the firm's "
      "summer income once repairs are paid, in dollars?"),
    T("car_wash_days", "dev", "(a - b) / (c * d)", "a=1000..9000 b=100..900 c=5..15 d=12..40",
      "A charity needs ${a} and has raised ${b} so far. Its volunteers wash {d} cars on a full day, "
      "charging ${c} for a wash. How many full days of washing will cover what is still missing?"),
    T("hospital_soup_tubs", "dev", "(a - b * c) / d", "a=500..3000 b=3..12 c=12..60 d=3..12",
      "A hospital kitchen cooks {a} portions of soup. Its {b} wards take {c} portions apiece, and whatever "
      "remains is frozen in tubs holding {d} portions. How many tubs get frozen?"),
    T("festival_income", "dev", "(a * b + c) * d", "a=12..60 b=12..50 c=100..900 d=3..6",
      "On every day of a festival, {a} food stalls pay ${b} apiece for their pitch and the car park takes "
      "${c}. The festival lasts {d} days. What does it earn over its whole run, in dollars?"),
    T("florist_bouquets", "dev", "a / b + c / d", "a=1200..6000 b=3..12 c=100..900 d=3..8",
      "{name}, a florist, has {a} roses and {c} tulips. Roses go into bouquets of {b} and tulips into "
      "bouquets of {d}. Altogether, how many bouquets can {name} make?"),
    T("nursery_seedlings", "dev", "a - (b + c) * d", "a=2000..9000 b=100..200 c=12..60 d=3..9",
      "A plant nursery starts the spring with {a} seedlings. For {d} days it sells {b} seedlings to shops "
      "and {c} to gardeners daily. What number of seedlings is left at the end?"),
    # ------------------------------------------------------------------------------------------- test
    T("vineyard_barrels", "test", "(a - b) * c / d", "a=300..2000 b=12..200 c=3..12 d=100..500",
      "A vineyard has {a} vines, but {b} are too young to fruit. Every older vine yields {c} kilograms of "
      "grapes, and the winery needs {d} kilograms to fill a barrel. What number of barrels can it fill?"),
    T("pottery_firings", "test", "a * b / (c * d)", "a=12..40 b=12..60 c=3..6 d=12..20",
      "A pottery studio glazes {a} bowls daily for {b} days. Its kiln holds {c} shelves with {d} bowls on "
      "every shelf in a firing. How many firings does it take to fire every bowl?"),
    T("circus_free_seats", "test", "a * b - (c + d)", "a=12..40 b=12..40 c=100..400 d=12..99",
      "A circus tent has {a} benches that seat {b} people apiece. For tonight's show {c} tickets went "
      "online and {d} at the gate. How many seats are still free?"),
    T("marathon_medals", "test", "(a + b) / c * d", "a=100..900 b=100..900 c=12..50 d=12..60",
      "At a marathon, {a} runners finish the long course and {b} finish the short course, and every "
      "finisher is given a medal. Medals come in cartons of {c}; a carton is priced at ${d}. What do "
      "the medals cost, in dollars?"),
    T("ore_haulage_profit", "test", "a / b * c - d", "a=1000..9000 b=12..40 c=100..300 d=100..2000",
      "Lorries carry {b} tonnes of ore on a load. A mine ships out {a} tonnes this week, and every load "
      "earns the haulier ${c}. The haulier's fuel bill for the week is ${d}. What is the haulier's profit "
      "for the week, in dollars?"),
    T("lab_water_drums", "test", "a * b / c - d", "a=100..400 b=3..12 c=3..9 d=12..60",
      "The school lab already has {d} full drums of distilled water. Its {a} students need {b} litres "
      "apiece for an experiment, and the water is delivered in drums of {c} litres. Find how many further "
      "drums the lab must order."),
    T("quilter_squares", "test", "a * b * c + d * e", "a=3..8 b=12..20 c=12..20 d=12..40 e=12..30",
      "{name} sews {a} quilts made of {b} rows with {c} squares in every row, plus {d} cushions that use "
      "{e} squares apiece. What is the total number of squares {name} sews?"),
    T("shipyard_plates_unused", "test", "a - b * c - d", "a=2000..9000 b=3..12 c=100..400 d=12..99",
      "A shipyard orders {a} steel plates. Every hull it builds takes {c} plates, and it builds {b} hulls; "
      "another {d} plates are damaged in storage. How many plates remain unused?"),
    T("ski_lift_passes", "test", "(a + b) * (c + d)", "a=100..400 b=12..99 c=100..150 d=12..60",
      "Every day of the season a ski resort sells {a} adult lift passes and {b} child lift passes. The "
      "season has {c} weekdays and {d} weekend days. Over the whole season, what is the number of lift "
      "passes sold?"),
    T("juice_bar_hourly", "test", "a / b / c", "a=1000..9000 b=3..9 c=3..12",
      "A juice bar serves its glasses evenly over {c} opening hours. Every glass needs {b} oranges, and "
      "today it squeezed {a} oranges. What number of glasses does it serve in an hour?"),
    T("data_centre_drives", "test", "(a - b) / (c - d)", "a=5000..90000 b=100..4000 c=500..2000 d=12..99",
      "A data centre must store {a} gigabytes of new backups and has already written {b} gigabytes of "
      "them. A drive holds {c} gigabytes, but {d} gigabytes on every drive are kept free for the system. "
      "What number of further drives will the backups fill?"),
    T("shelter_food_sacks", "test", "a / b + c", "a=1000..5000 b=5..20 c=12..90",
      "An animal shelter orders {a} kilograms of dog food in sacks of {b} kilograms, along with {c} sacks "
      "of cat food. What is the number of sacks delivered?"),
)
# fmt: on
del T


# ------------------------------------------------------------------------------------------ parsing
@functools.cache
def _tree(formula: str) -> ast.expr:
    return ast.parse(formula, mode="eval").body


@functools.cache
def _ranges(spec: str) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for part in spec.split():
        name, span = part.split("=")
        lo, hi = span.split("..")
        out[name] = (int(lo), int(hi))
    return out


def _leaves(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _leaves(node.left) + _leaves(node.right)
    raise ValueError(f"unsupported formula part {ast.dump(node)}; use + - * / over variable names")


def _check_template(t: Template) -> None:
    """A programming error in the template list fails at import, naming the template."""
    leaves = _leaves(_tree(t.formula))
    fields = [f for _, f, _, _ in string.Formatter().parse(t.text) if f is not None]
    problems = []
    if t.split not in TEMPLATE_SPLITS:
        problems.append(f"split {t.split!r} is not one of {TEMPLATE_SPLITS}")
    if len(set(leaves)) != len(leaves):
        problems.append("a variable appears twice in the formula")
    if not 2 <= len(leaves) - 1 <= MAX_STEPS:
        problems.append(f"{len(leaves) - 1} steps; write 2 to {MAX_STEPS}")
    if set(_ranges(t.ranges)) != set(leaves) or any(lo > hi for lo, hi in _ranges(t.ranges).values()):
        problems.append("ranges must give each formula variable once, as lo..hi")
    if sorted(f for f in fields if f not in _NAME_FIELDS) != sorted(leaves):
        problems.append("the text must hold each formula variable exactly once")
    if any(c.isdigit() for c in re.sub(r"\{\w+\}", "", t.text)):
        problems.append("the text has a digit that is not a variable")
    if problems:
        raise ValueError(f"arithmetic template {t.id!r}: " + "; ".join(problems))


for _t in ARITHMETIC_TEMPLATES:
    _check_template(_t)
if len({t.id for t in ARITHMETIC_TEMPLATES}) != len(ARITHMETIC_TEMPLATES):
    raise ValueError("arithmetic template ids must be unique")


# ------------------------------------------------------------------------------------------ drawing
class _Redraw(Exception):
    """The numbers drawn so far cannot satisfy the rules; draw the question's numbers again."""


def _pick(rng: random.Random, lo: int, hi: int, mod: int = 1, rem: int = 0) -> int:
    """A uniform integer in [lo, hi] congruent to rem modulo mod."""
    first = lo + (rem - lo) % mod
    if first > hi:
        raise _Redraw
    return first + mod * rng.randrange((hi - first) // mod + 1)


class _Numbers:
    """Draws a template's variables so that divisions come out exact: a divisor variable is picked among the
    divisors of its dividend; otherwise a requirement `value % mod == 0` is passed down to a variable that
    can meet it (a dividend, an addend, a factor). Other rules are checked afterwards by `_steps`."""

    def __init__(self, t: Template, rng: random.Random):
        self.ranges, self.rng = _ranges(t.ranges), rng
        self.vals: dict[str, int] = {}

    def leaf(self, node: ast.Name, mod: int = 1, rem: int = 0, lo: int = 1, hi: int | None = None) -> int:
        a, b = self.ranges[node.id]
        v = _pick(self.rng, max(lo, a), b if hi is None else min(hi, b), mod, rem % mod)
        self.vals[node.id] = v
        return v

    def ev(self, node: ast.expr, mod: int = 1) -> int:
        """The value of `node`, drawing its variables so that it is a multiple of `mod`."""
        if isinstance(node, ast.Name):
            return self.leaf(node, mod)
        assert isinstance(node, ast.BinOp)
        by_op = {"/": self._div, "-": self._sub, "+": self._add, "*": self._mul}
        return by_op[_OPS[type(node.op)]](node.left, node.right, mod)

    def _div(self, left: ast.expr, right: ast.expr, mod: int) -> int:
        if isinstance(right, ast.Name):
            dividend = self.ev(left)
            lo, hi = self.ranges[right.id]
            divisors = [
                d for d in range(lo, min(hi, dividend) + 1) if dividend % d == 0 and dividend // d % mod == 0
            ]
            if not divisors:
                raise _Redraw
            self.vals[right.id] = d = self.rng.choice(divisors)
            return dividend // d
        divisor = self.ev(right)
        if divisor <= 0:
            raise _Redraw
        dividend = self.ev(left, divisor * mod)
        if dividend % divisor:
            raise _Redraw
        return dividend // divisor

    def _sub(self, left: ast.expr, right: ast.expr, mod: int) -> int:
        if isinstance(right, ast.Name):
            a = self.ev(left)
            return a - self.leaf(right, mod, a, hi=a - 1)
        if isinstance(left, ast.Name):
            b = self.ev(right)
            return self.leaf(left, mod, b, lo=b + 1) - b
        return self.ev(left) - self.ev(right)

    def _add(self, left: ast.expr, right: ast.expr, mod: int) -> int:
        if isinstance(right, ast.Name):
            a = self.ev(left)
            return a + self.leaf(right, mod, -a)
        if isinstance(left, ast.Name):
            b = self.ev(right)
            return self.leaf(left, mod, -b) + b
        return self.ev(left) + self.ev(right)

    def _mul(self, left: ast.expr, right: ast.expr, mod: int) -> int:
        if isinstance(right, ast.Name):
            a = self.ev(left)
            return a * self.leaf(right, mod // math.gcd(a, mod))
        if isinstance(left, ast.Name):
            b = self.ev(right)
            return self.leaf(left, mod // math.gcd(b, mod)) * b
        return self.ev(left) * self.ev(right)


def _step_ok(a: int, op: str, b: int, v: int) -> bool:
    if v <= 0:
        return False
    if op == "*":
        return max(a, b) >= 12 and min(a, b) >= 3
    if op == "+":
        return max(a, b) >= 100 and min(a, b) >= 12
    if op == "-":
        return a >= 100 and b >= 12
    return b >= 3 and a >= 100 and v >= 2


def _steps(node: ast.expr, vals: dict[str, int], out: list[tuple[int, str, int, int]]) -> int:
    """Post-order: append (a, op, b, value) per operation; _Redraw when a step breaks a rule."""
    if isinstance(node, ast.Name):
        return vals[node.id]
    assert isinstance(node, ast.BinOp)
    a, b = _steps(node.left, vals, out), _steps(node.right, vals, out)
    op = _OPS[type(node.op)]
    if op == "/" and (b <= 0 or a % b):
        raise _Redraw
    v = {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b else 0}[op]
    if not _step_ok(a, op, b, v):
        raise _Redraw
    out.append((a, op, b, v))
    return v


def arithmetic_record(template: Template, rng: random.Random, max_tries: int = 20_000) -> dict[str, str]:
    """One question of `template` with names and numbers drawn from `rng` (no split filter)."""
    name, name2 = rng.sample(NAMES, 2)
    tree = _tree(template.formula)
    for _ in range(max_tries):
        draw = _Numbers(template, rng)
        steps: list[tuple[int, str, int, int]] = []
        try:
            draw.ev(tree)
            _steps(tree, draw.vals, steps)
        except _Redraw:
            continue
        values = [*draw.vals.values(), *(v for *_, v in steps)]
        if len(set(values)) < len(values):
            continue
        question = template.text.format(name=name, name2=name2, **{k: str(v) for k, v in draw.vals.items()})
        lines = [f"{_SAY[op]}: {a} {op} {b} = <<{a}{op}{b}={v}>>{v}." for a, op, b, v in steps]
        answer = "\n".join([*lines, f"#### {steps[-1][3]}"])
        return {"question": question, "answer": answer, "template": template.id}
    raise RuntimeError(
        f"arithmetic template {template.id!r}: no valid numbers in {max_tries} draws; widen its ranges"
    )


def arithmetic_records(n: int, seed: int, split: str, templates: int | None = None) -> list[dict[str, str]]:
    """`n` GSM8K-format word problems of question split `split` (train, dev, test or test_seen), each with
    its template id; `templates=k` draws only from the first k train templates (train and test_seen)."""
    check_split(split)
    pool = [t for t in ARITHMETIC_TEMPLATES if t.split == templates_of(split)]
    if templates is not None:
        if templates_of(split) != "train":
            raise ValueError(
                f"templates={templates}: split {split!r} draws from {templates_of(split)} templates; "
                "use templates only with train or test_seen (or leave it None)"
            )
        if not 1 <= templates <= len(pool):
            raise ValueError(f"templates={templates}: choose 1..{len(pool)} (the number of train templates)")
        pool = pool[:templates]
    if n < 0:
        raise ValueError(f"n={n}: the number of questions must be >= 0")
    want = bucket_of(split)
    rng = random.Random(f"toy-arithmetic-{seed}-{split}")
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for _ in range(100 * n + 1000):
        if len(out) >= n:
            break
        rec = arithmetic_record(rng.choice(pool), rng)
        if rec["question"] in seen or bucket(rec["question"]) != want:
            continue
        seen.add(rec["question"])
        out.append(rec)
    if len(out) < n:
        raise RuntimeError(f"toy arithmetic: only {len(out)} distinct {split} questions; ask for fewer")
    return out
