//! Front-end tier: IMAP/POP3/SMTP proxies routed by LDAP `mailHost` (issue 5; not built yet).
