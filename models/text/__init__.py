"""The text front end shared by every voice family (today: the guard that bounds any text)."""
