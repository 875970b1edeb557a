-- Room on each page for updated row versions: a repeat contact's customer update can then be
-- a heap-only tuple (HOT) and skip every index.
ALTER TABLE crm.customers SET (fillfactor = 85);
ALTER TABLE crm.contacts SET (fillfactor = 90);
