"""Stand-ins for the services the bot talks to (``standins.discord``, ``standins.openai``): real servers on
127.0.0.1 that speak the real protocols, for the tests and the benchmarks; not part of the installed
package, imported from the repository root."""
