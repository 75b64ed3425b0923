"""Reading what users give: corpora text, labelled and tagged files, record formats."""
