"""CIFAR class definitions: CIFAR-10 WordNet synsets and CIFAR-100 superclasses.

CIFAR-10 classes (labels 0-9, alphabetical as in torchvision) are mapped to
the WordNet 3.0 noun synset that names exactly what the class shows:

==========  =================  =========  =========================================
class       synset             wnid       why
==========  =================  =========  =========================================
airplane    airplane.n.01      n02691156  fixed-wing powered aircraft
automobile  car.n.01           n02958343  "motor vehicle with four wheels" (sedans,
                                          SUVs); auto/automobile are its lemmas
bird        bird.n.01          n01503061  the class covers all birds
cat         domestic_cat.n.01  n02121808  CIFAR cats are house cats; cat.n.01 also
                                          spans wildcats (and is its parent anyway)
deer        deer.n.01          n02430045  all deer
dog         dog.n.01           n02084071  the domestic dog
frog        frog.n.01          n01639765  all frogs
horse       horse.n.01         n02374451  Equus caballus
ship        ship.n.01          n04194289  vessel carrying passengers or freight
truck       truck.n.01         n04490091  automotive vehicle for hauling
==========  =================  =========  =========================================

CIFAR-100's 20 superclasses are the dataset's published definition (Krizhevsky,
"Learning Multiple Layers of Features from Tiny Images", 2009, and the table
at https://www.cs.toronto.edu/~kriz/cifar.html), copied here verbatim.
"""

CIFAR10_SYNSETS = {
    "airplane": "airplane.n.01",
    "automobile": "car.n.01",
    "bird": "bird.n.01",
    "cat": "domestic_cat.n.01",
    "deer": "deer.n.01",
    "dog": "dog.n.01",
    "frog": "frog.n.01",
    "horse": "horse.n.01",
    "ship": "ship.n.01",
    "truck": "truck.n.01",
}
CIFAR10_CLASSES = sorted(CIFAR10_SYNSETS)

#: CIFAR-100 fine labels in their standard (alphabetical) order.
CIFAR100_FINE_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle",
    "bicycle", "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel",
    "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster",
    "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse",
    "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear",
    "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea",
    "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip",
    "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)

#: The 20 superclasses (coarse labels 0-19, standard order) and their members.
CIFAR100_SUPERCLASSES = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}
CIFAR100_COARSE_CLASSES = tuple(CIFAR100_SUPERCLASSES)


def cifar100_coarse_labels() -> list[int]:
    """Coarse (superclass) label of each CIFAR-100 fine label, in fine-label order."""
    coarse_of = {
        fine: coarse
        for coarse, members in enumerate(CIFAR100_SUPERCLASSES.values())
        for fine in members
    }
    return [coarse_of[fine] for fine in CIFAR100_FINE_CLASSES]
