"""The peer: a command shell, a seeder, and parallel verified downloads."""
