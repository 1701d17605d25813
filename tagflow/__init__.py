"""The root of every tagflow package, and what all of them share: the settings, the error
hierarchy, name validation and time ranges."""
