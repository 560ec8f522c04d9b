"""PostgreSQL storage: ``database`` (embedded server, pool, reconnect), ``migrations`` (versioned
SQL) and ``repository`` (bars/features reads and writes). Import the submodules directly; this
package stays import-light so a process that only manages the server does not load pandas."""
