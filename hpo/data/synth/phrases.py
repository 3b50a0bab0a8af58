"""Phrase tables beside the topics: hidden, mild and hard-negative clauses, context, openers, explanations."""

from __future__ import annotations

# fmt: off
# Evidence without the symptom's keywords (status 1): an annotator reads the symptom from what is described.
HIDDEN: dict[str, tuple[str, ...]] = {
    "DEPRESSED_MOOD": ("I sit in my car in the parking lot for an hour before I can walk into the house",
                       "every song on the radio makes my throat close up and I have to turn it off",
                       "I smile at work and then I get home and just stare at the wall until it is dark"),
    "ANHEDONIA": ("my guitar has been sitting in the corner collecting dust since the summer",
                  "my friends stopped inviting me because I always say I will see how I feel",
                  "I finished the game I waited two years for and felt absolutely nothing"),
    "APPETITE_CHANGE": ("my jeans are falling off me and my mom keeps asking if I am eating",
                        "I realized at nine at night that the only thing I had all day was a coffee",
                        "I have gone up two sizes since the fall from eating cereal out of the box at "
                        "midnight"),
    "SLEEP_ISSUES": ("I watch the numbers on my clock go from one to five most nights",
                     "I slept through three alarms and my whole Saturday again",
                     "I see the sun come up more often than I see it set these days"),
    "PSYCHOMOTOR": ("my coworker asked why it takes me a full minute to answer a simple question",
                    "my leg will not stop bouncing under the desk and I keep getting up to walk the hallway",
                    "it takes me twenty minutes to get from the bed to the shower"),
    "FATIGUE": ("carrying the groceries up one flight of stairs feels like running a marathon",
                "I sit on the edge of the bed for ten minutes before I can stand up and get dressed",
                "by lunch my arms feel like they are made of sand"),
    "WORTHLESSNESS": ("everyone would have a better team if they replaced me with literally anyone",
                      "I apologize to people for existing in the same room as them",
                      "I replay every stupid thing I said at dinner and cringe at myself for days"),
    "COGNITIVE_ISSUES": ("I stood in the cereal aisle for twenty minutes because I could not pick a box",
                         "I have reread the same email five times and still do not know what it says",
                         "I walk into a room and have no idea why I am there several times a day"),
    "SUICIDAL_THOUGHTS": ("I have been looking up how to write a will even though I am twenty two",
                          "I keep thinking it would be a relief if I just did not wake up tomorrow",
                          "I gave my cat to my sister in case something happens to me"),
    "SPECIAL_CASE": ("my psychiatrist and I are trying a third pill because the first two did nothing",
                     "the intake form at the clinic said major depressive episode, recurrent",
                     "I have been in and out of therapy since I was fifteen"),
}
# Passing, subclinical mentions: the symptom's words, but one bad day or a normal reaction. Coin-flip status.
MILD: dict[str, tuple[str, ...]] = {
    "DEPRESSED_MOOD": ("I was a bit down after the game on Sunday",
                       "I felt kind of sad when my friend moved"),
    "ANHEDONIA": ("I have not been that into {hobby} this month",
                  "I skipped {hobby} this week, not in the mood"),
    "APPETITE_CHANGE": ("I was not very hungry yesterday", "I have been snacking more than usual this week"),
    "SLEEP_ISSUES": ("I slept badly before my exam", "I stayed up too late gaming a couple of nights"),
    "PSYCHOMOTOR": ("I was a bit restless waiting for the results",
                    "I felt slow this morning before my coffee"),
    "FATIGUE": ("I was tired after the double shift", "I have been a bit low on energy this week"),
    "WORTHLESSNESS": ("I felt guilty for forgetting her birthday", "I felt a little useless at the new job"),
    "COGNITIVE_ISSUES": ("I had trouble focusing in the meeting today", "I could not decide what to order"),
    "SUICIDAL_THOUGHTS": ("I sometimes think about what my funeral would be like",
                          "I joked that I would rather die than go to that meeting"),
    "SPECIAL_CASE": ("I wonder if I should talk to someone about how I have been",
                     "my friend thinks I might have depression"),
}
# A symptom sentence (core) in a context that makes it no evidence for the writer now (status 0).
HARD: tuple[str, ...] = (
    'my {rel} texted me "{core}" and I did not know what to say',
    "a few years ago {core_l}, but that is behind me now",
    "my {doctor} asked whether {core_l} and I could honestly say no",
    "it is not that {core_l}, I am just stressed about money",
    "people at work joke that {core_l} every time the Monday meeting runs long",
    "I keep reading posts where people say {core_l} and I am glad that is not me anymore",
    "my {rel} has been saying {core_l} and I am worried about {them}",
    "in high school {core_l}, but I got help and I have been okay for years",
)
RELATIVES = (("sister", "her"), ("brother", "him"), ("best friend", "her"), ("roommate", "him"),
             ("mom", "her"), ("dad", "him"), ("boyfriend", "him"), ("girlfriend", "her"), ("coworker", "her"))
# Symptom-neutral context: what Reddit sentences wrap around the one clause that matters.
CONTEXT: tuple[str, ...] = (
    "my roommate moved out in March", "I work closing shifts at a grocery store",
    "my parents keep asking when I will finish my degree", "I moved to a new city for a job last year",
    "my car broke down again last week", "I have been applying to jobs for months",
    "my best friend moved across the country", "we adopted a cat in the spring", "my sister just had a baby",
    "I switched majors twice", "rent went up again", "I have two exams next week",
    "my dad and I do not really talk anymore", "I spend most evenings on my phone",
    "my boyfriend and I broke up in January", "my girlfriend works nights so I barely see her",
    "the weather here has been gray for weeks", "I am the oldest of four kids",
    "my manager keeps changing my schedule", "I live with two roommates I barely know",
    "my mom calls me every Sunday", "I have been trying to save money for a car",
    "we had a family reunion last month", "my grandma has been in and out of the hospital",
    "I quit my part time job in October", "I have a group project due Friday",
    "I do not have many friends in this town", "my landlord still has not fixed the heating",
    "my little brother is starting high school", "everyone at work seems to have their life together",
    "I turned twenty five in May", "I am in my last year of college", "I got passed over for a promotion",
    "my internet has been out half the week", "I spent the holidays alone this year",
    "my friends from high school all have kids now", "I volunteer at an animal shelter on weekends",
    "I drive an hour each way to work", "my parents are getting divorced", "my dog died in the summer",
    "my boss says my work is fine", "I take the bus everywhere", "I am behind on my student loans",
    "my ex started dating one of my friends", "I keep telling myself next week will be different",
    "nobody in my family talks about feelings", "I have been at this company for six years",
    "I just started my second year of grad school", "my shift starts at six in the morning",
    "I deleted most of my social media", "my cousin is getting married in the fall",
    "I have lived in the same apartment since college", "the bills keep piling up on the counter",
)
JOIN_BEFORE = (", and ", ", so ", " and ", ", but ", " and honestly ", ", and then ")
JOIN_AFTER = (" and ", ", because ", ", but ", ", and ", " since ", ", which is why ", " and like ")
LEADS = ("honestly ", "to be honest ", "I guess ", "also ", "and ", "on top of that ", "idk, ", "so yeah, ")
OPENERS = ("Throwaway account because people I know use this site.", "I am not sure where else to post this.",
           "Long time lurker, first post.", "I am {age} and {job}.", "This is going to be a long one.")
CLOSERS = ("Thanks for reading.", "Any advice would help.", "I just needed to get this off my chest.",
           "Does anyone else feel this way?", "Sorry for the rambling.", "TL;DR I do not know what to do.")
POST_FILL: dict[str, tuple[str, ...]] = {
    "age": ("19", "22", "24", "27", "31", "35", "42"),
    "job": ("work in retail", "a college student", "work in an office", "a nurse", "between jobs",
            "a high school teacher", "a software developer"),
    "rel": tuple(r for r, _ in RELATIVES),
}
EXPLAIN_POS = ("The writer describes {topic}.", "Clear first-person report of {topic}.",
               "The sentence expresses {topic}.")
EXPLAIN_HIDDEN = "No keyword, but the behaviour described is {topic}."
EXPLAIN_OK = ("Healthy statement on this topic; no sign of {topic}.",
              "The writer reports the opposite of {topic}.")
EXPLAIN_HARD = "Mentions {topic}, but not as the writer's current experience."
EXPLAIN_MILD = ("Passing mention; too mild or brief to count as {topic}.",
                "Borderline: read as {topic} given the rest of the post.")
EXPLAIN_CROSS = "The sentence is about {about}, not {label}."
EXPLAIN_FLIP = " (Borderline call.)"
# fmt: on
