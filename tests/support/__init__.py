"""What the tests share beside their fixtures (tests/conftest.py): servers on loopback that stand in
for the services the code talks to (the Hub, Flickr and the Open Images mirror)."""
