"""What runs produce, typed: the report card of ``compress`` (:mod:`.card`), the summary of ``finetune``
(:mod:`.training_summary`), and the Markdown rendering of a card (:mod:`.markdown`)."""
