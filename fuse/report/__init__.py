"""What stage two writes for people: ``classes`` (the class report), ``targets`` (the tag and value reports), ``plots``
(the figures) and ``pages`` (report.html from a report's markdown)."""
