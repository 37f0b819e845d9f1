import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import greet  # noqa: E402


class HelloTests(unittest.TestCase):
    def test_default(self):
        self.assertEqual(greet.hello(), "Hello, world!")

    def test_name_is_trimmed(self):
        self.assertEqual(greet.hello("  Ada "), "Hello, Ada!")

    def test_blank_name_is_refused(self):
        with self.assertRaises(ValueError):
            greet.hello("   ")


if __name__ == "__main__":
    unittest.main()
