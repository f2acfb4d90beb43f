"""Images on items: a safe fetcher, PDQ and MD5 hashes, hash banks and their index, stored copies for reviewers."""
