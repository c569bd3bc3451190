"""The version of pymemoe (its own module, so that any module can read it without importing the
package's ``__init__``)."""
__version__ = "0.1.0.dev0"
